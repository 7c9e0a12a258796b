"""Where a worker runs the CPU-heavy stages of a message: its thread pool, or inline.

Handing a stage to the thread pool costs a thread wake-up, a GIL hand-over and a loop
wake-up each way, and while the stage runs the event loop thread and the pool thread
take turns at the GIL. For a small message that overhead is as large as the work
itself (measured: about 1 ms of CPU per message on corpus mail), and the loop would be
blocked only a few milliseconds by doing the work itself. So the processor marks the
analysis of a message up to ``server.inline_cpu_max_size`` bytes as inline, and
:func:`make_run_cpu`'s function then calls the stage directly; larger messages (big
attachments, archives) and blocking I/O outside the analysis (quarantine writes, DKIM
signing) always go to the pool.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any

RunCpu = Callable[..., Awaitable[Any]]

# Per asyncio task (each SMTP session and the check tasks it starts), never process-wide.
_INLINE: ContextVar[bool] = ContextVar("scanner_cpu_inline", default=False)
# The content digest of the message the current asyncio task works on (PoolJobs).
_MESSAGE: ContextVar[bytes] = ContextVar("scanner_cpu_message", default=b"")


@contextmanager
def _set_within(var: ContextVar[Any], value: Any) -> Iterator[None]:
    """``var`` holds ``value`` within this block (and in tasks started in it)."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def inline_cpu(enabled: bool) -> AbstractContextManager[None]:
    """Within this block (and tasks started in it), ``run_cpu`` runs stages inline."""
    return _set_within(_INLINE, enabled)


class PoolJobs:
    """The stages running in a worker's thread pool right now, with their start times.

    A stage keeps running in its thread after the message's own timeout gave up on it
    (a thread cannot be stopped from outside); the worker's heartbeat asks
    :meth:`oldest` to find such orphans and retire the worker.
    """

    def __init__(self) -> None:
        self._running: dict[int, tuple[float, str, bytes]] = {}
        self._tokens = itertools.count()

    def run(self, digest: bytes, func: Callable[..., Any], *args: Any) -> Any:
        """Call ``func(*args)`` (in a pool thread) while it is listed as running, for
        the message with content ``digest``."""
        token = next(self._tokens)
        self._running[token] = (time.monotonic(), getattr(func, "__qualname__", "stage"),
                                digest)
        try:
            return func(*args)
        finally:
            del self._running[token]

    def oldest(self) -> tuple[float, str, bytes] | None:
        """(start, name, message digest) of the longest-running stage, or None when the
        pool is idle."""
        running = list(self._running.values())  # one C call: safe against the threads
        return min(running) if running else None


def current_message(digest: bytes) -> AbstractContextManager[None]:
    """Within this block, stages sent to the thread pool are listed with ``digest``."""
    return _set_within(_MESSAGE, digest)


def make_run_cpu(loop: asyncio.AbstractEventLoop, executor: Executor,
                 jobs: PoolJobs | None = None) -> RunCpu:
    """``await run_cpu(func, *args)``: inline when marked so, else in ``executor``."""

    async def run_cpu(func: Callable[..., Any], *args: Any) -> Any:
        if _INLINE.get():
            return func(*args)
        if jobs is not None:
            return await loop.run_in_executor(
                executor, partial(jobs.run, _MESSAGE.get(), func, *args))
        return await loop.run_in_executor(executor, partial(func, *args))

    return run_cpu

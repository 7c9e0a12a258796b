"""SIGHUP in a worker: the checks reload their data (a new model, rule files, DKIM keys).

The master sends it when it gets SIGHUP, and when a file the checks asked it to watch
has changed (the classifier's model, :mod:`scanner.serve.watch`): one way to reload,
whatever asked for it, and never in a message's path.

Reloads run in the worker's thread pool, never in its event loop: loading a model or a
rule set takes tens of milliseconds to seconds, and the loop serves every connection
and beats the watchdog's heartbeat meanwhile. SIGHUPs are coalesced: one that comes
while a reload runs makes exactly one more reload after it (the data may have changed
after the running one read it), however many came. A storm of SIGHUPs thus costs one
reload running and one waiting at most, where each signal used to be one more reload
in the loop.

A worker started by the master has SIGHUP blocked until :func:`handle_signals` (see
:mod:`scanner.serve.master`): a SIGHUP that came while it loaded its checks is taken
there, and the reload is done before the worker serves its first connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence

from scanner.pipeline.cpu import RunCpu, inline_cpu

log = logging.getLogger("scanner")


def reload_checks(checks: Sequence) -> None:
    """Let every check that can reload its data do so; one that fails keeps its state."""
    for check in checks:
        reload = getattr(check, "reload", None)
        if reload is None:
            continue
        try:
            reload()
        except Exception:
            log.exception("reloading check %s failed; keeping the old state", check.name)


class Reloads:
    """The worker's SIGHUP reloads: off the event loop, at most one running."""

    def __init__(self, checks: Sequence, run_cpu: RunCpu) -> None:
        self._checks = checks
        self._run_cpu = run_cpu
        self._wanted = False
        self._task: asyncio.Task[None] | None = None

    def request(self) -> None:
        """Reload soon (the SIGHUP handler; called in the event loop)."""
        self._wanted = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def now(self) -> None:
        """Reload and wait until it is done."""
        self.request()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        while self._wanted:
            self._wanted = False  # a SIGHUP from now on asks for one more round
            try:
                with inline_cpu(False):  # reading files: never in the event loop
                    await self._run_cpu(reload_checks, self._checks)
            except Exception as exc:  # the pool is shut down: the worker is stopping
                log.error("worker %d: SIGHUP reload not done (%s); the checks keep their "
                          "data", os.getpid(), exc)
                return


async def handle_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event,
                         reloads: Reloads) -> None:
    """SIGTERM/SIGINT set ``stop``, SIGHUP reloads; a SIGHUP that came while the worker
    started (pending: the master forks workers with it blocked) is reloaded before this
    returns, so no message is scored with the data read before it."""
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reloads.request)
    came = signal.sigtimedwait([signal.SIGHUP], 0) is not None  # takes it if pending
    # unblocked before any thread is started here (threads inherit the mask), and a
    # SIGHUP from now on goes to the handler
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGHUP])
    if came:
        log.info("worker %d: SIGHUP came while it started; reloading the checks' data",
                 os.getpid())
        await reloads.now()

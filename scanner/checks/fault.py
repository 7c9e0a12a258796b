"""FAULT_INJECTION: a testing aid that raises inside a check on demand.

Off by default. When enabled, a message carrying the header named by ``header``
(default ``X-Scanner-Fault``) makes the check raise. With ``mode = "once"`` it raises
only the first time this process sees that Message-ID, so a retried message passes:
that is how the tests prove that a crashing check defers mail instead of losing it.
With ``mode = "sleep"`` it holds the message for ``seconds`` instead, so tests can kill
the filter while transactions are open. ``mode = "block"`` holds it for ``seconds``
without yielding to the event loop (a stuck computation: the watchdog's case) and
``"block_thread"`` in the worker's thread pool (a stuck library call). With
``once_dir`` set, "once", "block" and "block_thread" act once per Message-ID across
processes (a marker file per Message-ID there), so a retried message passes even when
the first attempt's worker was killed. With ``start_gate`` set, a process building
this check while that file exists waits there until it is removed (creating
``FILE.PID`` meanwhile): tests hold a worker in its start-up, after the checks before
this one (by name) have loaded their data.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from scanner.checks.base import CheckContext
from scanner.config.schema import opt
from scanner.task import Hit, Task


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Settings of the fault-injection check."""

    header: str = opt("X-Scanner-Fault", "header that triggers the fault")
    mode: str = opt("always", "always: raise every time; once: first time per Message-ID; "
                    "sleep: wait `seconds`, then pass; block: hold the event loop for "
                    "`seconds`; block_thread: hold a thread-pool thread for `seconds`",
                    choices=("always", "once", "sleep", "block", "block_thread"))
    seconds: float = opt(5.0, "how long modes sleep, block and block_thread hold a message",
                         min=0.0)
    once_dir: str = opt("", "directory of marker files: once, block and block_thread act "
                        "once per Message-ID across processes; empty = every time (block) "
                        "or once per process (once)")
    start_gate: str = opt("", "a file: building this check waits while it exists, with "
                          "FILE.PID created meanwhile (tests hold a starting worker)")


class InjectedFault(RuntimeError):
    """The exception this check raises on purpose."""


class FaultInjection:
    """Raise on purpose when a trigger header is present (tests only)."""

    name: ClassVar[str] = "fault_injection"
    description: ClassVar[str] = "Raises on messages carrying a trigger header (testing aid)"
    symbols: ClassVar[dict[str, str]] = {}
    default_enabled: ClassVar[bool] = False
    kind: ClassVar[str] = "other"
    Settings: ClassVar[type] = FaultSettings

    def __init__(self, settings: FaultSettings, context: CheckContext) -> None:
        self._settings = settings
        self._run_cpu = context.run_cpu
        self._seen: set[str] = set()
        if settings.start_gate:
            _wait_at_gate(settings.start_gate)

    async def run(self, task: Task) -> Iterable[Hit]:
        msg = task.message
        s = self._settings
        if msg is None or msg.get(s.header) is None:
            return []
        if s.mode == "sleep":
            await asyncio.sleep(s.seconds)
            return []
        key = str(msg.get("Message-ID", "")) or task.mail_id
        if s.mode != "always" and not self._first_time(key):
            return []
        if s.mode == "block":
            time.sleep(s.seconds)  # on purpose: the event loop is stuck meanwhile
            return []
        if s.mode == "block_thread":
            await self._run_cpu(time.sleep, s.seconds)
            return []
        raise InjectedFault(f"fault injected by header {s.header}")

    def _first_time(self, key: str) -> bool:
        """True the first time ``key`` is seen (by any process, with ``once_dir``)."""
        if not self._settings.once_dir:
            if self._settings.mode != "once":
                return True
            first = key not in self._seen
            self._seen.add(key)
            return first
        name = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:32]
        try:
            os.close(os.open(os.path.join(self._settings.once_dir, name),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False
        return True


def _wait_at_gate(gate: str) -> None:
    """Hold this process while ``gate`` exists; ``gate.PID`` says it is waiting."""
    if not os.path.exists(gate):
        return
    marker = f"{gate}.{os.getpid()}"
    with open(marker, "w"):
        pass
    try:
        while os.path.exists(gate):
            time.sleep(0.01)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(marker)

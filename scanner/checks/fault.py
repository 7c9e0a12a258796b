"""FAULT_INJECTION: a testing aid that raises inside a check on demand.

Off by default. When enabled, a message carrying the header named by ``header``
(default ``X-Scanner-Fault``) makes the check raise. With ``mode = "once"`` it raises
only the first time this process sees that Message-ID, so a retried message passes:
that is how the tests prove that a crashing check defers mail instead of losing it.
With ``mode = "sleep"`` it holds the message for ``seconds`` instead, so tests can kill
the filter while transactions are open.
"""

from __future__ import annotations

import asyncio
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
                    "sleep: wait `seconds`, then pass", choices=("always", "once", "sleep"))
    seconds: float = opt(5.0, "how long mode 'sleep' holds a message", min=0.0)


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
        self._seen: set[str] = set()

    async def run(self, task: Task) -> Iterable[Hit]:
        msg = task.message
        if msg is None or msg.get(self._settings.header) is None:
            return []
        if self._settings.mode == "sleep":
            await asyncio.sleep(self._settings.seconds)
            return []
        if self._settings.mode == "once":
            key = str(msg.get("Message-ID", "")) or task.mail_id
            if key in self._seen:
                return []
            self._seen.add(key)
        raise InjectedFault(f"fault injected by header {self._settings.header}")

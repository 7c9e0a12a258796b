"""Log throttling: one line per condition per interval instead of one per message.

Some troubles hit every message while they last (clamd down, a blacklist refusing our
resolver, a next hop refusing XFORWARD). Each message's summary line already shows the
symbol; the operator's log needs the condition once, then a reminder with a count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class LogThrottle:
    """At most one report per key per ``interval`` seconds; counts what it held back."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def due(self, key: Hashable) -> int | None:
        """None while ``key`` was reported less than ``interval`` ago (the event is
        counted); otherwise the number of events held back since the last report."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)

    def end(self, key: Hashable) -> int | None:
        """The condition is over: None if ``key`` was never reported, else the number of
        events held back since its last report. The next event is reported at once."""
        if self._last.pop(key, None) is None:
            return None
        return self._held.pop(key, 0)


def held_note(count: int, what: str = "more") -> str:
    """`` (N more since the last report)`` or '' for the end of a log line."""
    return f" ({count} {what} since the last report)" if count else ""

"""The time budget of one message's DNS work: a monotonic deadline.

Every query takes ``min(query timeout, time left)``; once the budget is spent, further
queries answer TIMEOUT at once instead of waiting.
"""

from __future__ import annotations

import time


class Deadline:
    """A point in monotonic time after which no DNS query may run."""

    __slots__ = ("_end",)

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._end - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

"""A small progress bar with counters for long training and evaluation runs (stderr).

On a terminal the bar is redrawn in place at most ten times a second; otherwise only the
final line is written, so logs and CI output stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``Progress("reading").update(done, total, ham=3, spam=2)`` ... ``.finish()``."""

    def __init__(self, label: str, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.live = enabled
        self.quiet = False
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._line = ""

    def update(self, done: int, total: int | None = None, **counts: int) -> None:
        """Record progress; redraws the bar when live and enough time has passed."""
        self._line = self._format(done, total, counts)
        now = time.monotonic()
        if self.live and now - self._last_draw >= 0.1:
            self._last_draw = now
            self.stream.write("\r\x1b[K" + self._line)
            self.stream.flush()

    def finish(self) -> None:
        """Write the final state on its own line (unless quiet)."""
        if self.quiet:
            return
        prefix = "\r\x1b[K" if self.live else ""
        self.stream.write(prefix + self._line + "\n")
        self.stream.flush()

    def _format(self, done: int, total: int | None, counts: dict[str, int]) -> str:
        elapsed = time.monotonic() - self.started
        extra = " ".join(f"{k} {v}" for k, v in counts.items())
        if total:
            width = 24
            filled = min(width, int(width * done / total))
            bar = "#" * filled + "." * (width - filled)
            head = f"{self.label} [{bar}] {done}/{total}"
        else:
            head = f"{self.label} {done}"
        return f"{head} {extra} {elapsed:.1f}s".replace("  ", " ")

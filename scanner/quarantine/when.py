"""Times for the quarantine: ``30d``-style durations, ``--since`` values, display format."""

from __future__ import annotations

import re
import time
from datetime import datetime

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """``90`` / ``90s`` / ``15m`` / ``12h`` / ``30d`` / ``2w`` -> seconds (ValueError if bad)."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration; use e.g. 30d, 12h, 15m, 90s or 2w")
    return float(m.group(1)) * _UNITS[(m.group(2) or "s").lower()]


def parse_since(text: str, now: float | None = None) -> float:
    """A duration back from now (``2d``) or a date/time (``2024-03-01``, ISO 8601)."""
    try:
        return (time.time() if now is None else now) - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (2d, 12h) nor a date "
                         "(2024-03-01 or 2024-03-01T08:00)") from None
    return moment.timestamp()  # naive values are local time


def format_time(ts: float | None) -> str:
    """Local time, ISO 8601 with offset, to the second; '-' for none."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")

"""SMTP reply helpers: default enhanced status codes (RFC 2034/3463) and formatting."""

from __future__ import annotations

import re
from functools import lru_cache

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}(?: |$)")

DEFAULT_ENHANCED = {
    211: "2.0.0", 214: "2.0.0", 221: "2.0.0", 250: "2.0.0", 251: "2.1.5", 252: "2.5.0",
    421: "4.3.0", 450: "4.2.0", 451: "4.3.0", 452: "4.3.1", 455: "4.5.0",
    500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4",
    530: "5.7.0", 550: "5.0.0", 552: "5.3.4", 553: "5.1.3", 554: "5.0.0", 555: "5.5.4",
}

NO_ENHANCED = {220, 235, 334, 354}


@lru_cache(maxsize=1024)  # pure; most replies are the same few texts
def with_enhanced(line: str) -> str:
    """Insert a default enhanced status code into a reply line that lacks one."""
    if len(line) < 4 or not line[:3].isdigit() or line[3] not in " -":
        return line
    code = int(line[:3])
    rest = line[4:]
    if code in NO_ENHANCED or _ENHANCED.match(rest):
        return line
    enhanced = DEFAULT_ENHANCED.get(code, f"{code // 100}.0.0")
    return f"{line[:4]}{enhanced} {rest}".rstrip()


def reply_code(line: str) -> int:
    """The numeric code of a reply line ('451 4.3.0 x' -> 451)."""
    return int(line[:3])

"""Text that others chose (a sender's subject, an AM.PDP peer's requested_by, ``--by``)
made safe for a terminal, a log line, a header field and the index.

Control characters (CR/LF would start a forged log line, ESC and CSI terminal escape
sequences) and bytes that were not UTF-8 (kept by ``surrogateescape``; no database or
UTF-8 log file takes them) are written as ``\\xNN``.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\udc80-\udcff]")


def printable(text: str) -> str:
    """``"a\\r\\nb"`` -> ``"a\\\\x0d\\\\x0ab"``; other characters unchanged."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", text)

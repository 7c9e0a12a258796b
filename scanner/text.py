"""Text that others chose (a sender's subject or address, a Message-ID, an AM.PDP peer's
requested_by, ``--by``) made safe for a terminal, a log line, a header field and the
index; every log line goes through it (``scanner.serve.logs``), as amavis's ``do_log``
escapes each of its lines.

Control characters (CR/LF would start a forged log line, ESC and CSI terminal escape
sequences) and bytes that were not UTF-8 (kept by ``surrogateescape``; no database or
UTF-8 log file takes them) are written as ``\\xNN``; the characters that end a line for
some readers (U+2028, U+2029) and the bidirectional formatting characters (U+202E would
show a field backwards) as ``\\uNNNN``. Other UTF-8 text is kept as it is, as amavis
writes it.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\udc80-\udcff"
                     "\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0xA0 or 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code & 0xFF:02x}"
    return f"\\u{code:04x}"


def printable(text: str) -> str:
    """``"a\\r\\nb"`` -> ``"a\\\\x0d\\\\x0ab"``; other characters unchanged."""
    return _UNSAFE.sub(lambda m: _escape(m.group()), text)

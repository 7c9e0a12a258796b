"""Edits of the header section on raw bytes: add headers, prefix the Subject, leave out
header fields (forged Authentication-Results).

The body and every other existing header byte stay as they were; only the lines we add,
the fields we leave out or the Subject value we prefix change.
"""

from __future__ import annotations

import re

from scanner.headerfields import section_end

_SUBJECT = re.compile(rb"(?im)^subject:[ \t]*")


def without(raw: bytes, ranges: list[tuple[int, int]]) -> bytes:
    """``raw`` without the byte ranges (whole header fields, as the checks found them)."""
    if not ranges:
        return raw
    pieces, pos = [], 0
    for start, end in sorted(ranges):
        if start >= pos:
            pieces.append(raw[pos:start])
            pos = end
    pieces.append(raw[pos:])
    return b"".join(pieces)


def prefix_subject(raw: bytes, prefix: str) -> bytes:
    """Put ``prefix`` in front of the Subject value (adding a Subject when there is none)."""
    if not prefix:
        return raw
    m = _SUBJECT.search(raw, 0, section_end(raw))
    tag = prefix.encode("utf-8")
    if m is None:
        return b"Subject: " + tag.rstrip() + b"\r\n" + raw
    return raw[: m.end()] + tag + raw[m.end():]


def fold(name: str, value: str, width: int = 78) -> str:
    """Fold a long structured value at spaces into CRLF + TAB continuation lines."""
    words = value.split(" ")
    lines, current = [], f"{name}: "
    for word in words:
        if len(current) + len(word) + 1 > width and current.strip() not in (f"{name}:", ""):
            lines.append(current.rstrip())
            current = "\t"
        current += word + " "
    lines.append(current.rstrip())
    return "\r\n".join(lines)[len(name) + 2:]

"""The header fields of raw message bytes with their byte ranges, for leaving some out.

A field is its name line plus continuation lines, up to and including its line end;
the blank line that ends the header section and the body are never part of one. Bare
LF line ends are read as well as CRLF.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_FIELD = re.compile(
    rb"(?m)^([!-9;-~]+)[ \t]*:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)(?:\r?\n|\Z)")


@dataclass(frozen=True, slots=True)
class Field:
    """One header field: its lower-case name, raw value (folds kept) and byte range."""

    name: bytes
    value: bytes
    start: int
    end: int


def section_end(raw: bytes) -> int:
    """Offset just past the line end of the last header line (where the blank line
    starts); len(raw) when the message has no blank line."""
    if raw.startswith((b"\r\n", b"\n")):
        return 0
    crlf, lf = raw.find(b"\r\n\r\n"), raw.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf + 2
    return lf + 1 if lf >= 0 else len(raw)


def fields(raw: bytes) -> Iterator[Field]:
    """Every header field of ``raw``, in order."""
    for m in _FIELD.finditer(raw, 0, section_end(raw)):
        yield Field(m.group(1).lower(), m.group(2), m.start(), m.end())

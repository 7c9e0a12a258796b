"""Header fields of raw message bytes, by name, with their byte ranges (for leaving
some out of a delivered copy).

A field is its name line plus continuation lines, up to and including its line end;
the blank line that ends the header section and the body are never part of one. Bare
LF line ends are read as well as CRLF. Names are matched without case.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Field:
    """One header field: its raw value (folds kept) and its byte range."""

    value: bytes
    start: int
    end: int


def blank_line(raw: bytes, start: int = 0) -> tuple[int, int]:
    """The first blank line at or after ``start``: (offset of the LF that ends the line
    before it, offset just past it), what ``\\n\\r?\\n`` would find; (-1, -1) if
    there is none. LF LF is looked for only before the first LF CR LF, so the body of
    CRLF mail (which has no LF LF) is not searched through."""
    lf_cr_lf = raw.find(b"\n\r\n", start)
    lf_lf = raw.find(b"\n\n", start, lf_cr_lf + 1 if lf_cr_lf >= 0 else len(raw))
    if lf_lf >= 0:
        return lf_lf, lf_lf + 2
    if lf_cr_lf >= 0:
        return lf_cr_lf, lf_cr_lf + 3
    return -1, -1


def section_end(raw: bytes) -> int:
    """Offset just past the line end of the last header line (where the blank line
    starts); len(raw) when the message has no blank line."""
    if raw.startswith((b"\r\n", b"\n")):
        return 0
    lf, _ = blank_line(raw)
    return lf + 1 if lf >= 0 else len(raw)


def line_end(raw: bytes) -> bytes:
    """How the lines of ``raw`` end: LF when its first line ends with a bare LF, else
    CRLF (also for a message of one unterminated line). Lines we add end the same way,
    so a bare-LF message gets no CRLF lines mixed in, nor a CRLF message bare LFs."""
    lf = raw.find(b"\n")
    return b"\n" if lf == 0 or lf > 0 and raw[lf - 1] != 13 else b"\r\n"


def named(raw: bytes, names: tuple[str, ...]) -> list[Field]:
    """The header fields of ``raw`` called one of ``names``, in order."""
    end = section_end(raw)
    common, field = _patterns(names)
    if common not in raw[:end].lower():  # the usual case: one fast substring search
        return []
    return [Field(m.group(1), m.start(), m.end()) for m in field.finditer(raw, 0, end)]


# the rest of a line: a bare CR inside it does not end it (nor the field, which was then
# not found at all: a forged field with a bare CR was neither removed nor tagged)
_LINE = rb"[^\r\n]*(?:\r(?!\n)[^\r\n]*)*"


@functools.lru_cache(maxsize=32)
def _patterns(names: tuple[str, ...]) -> tuple[bytes, re.Pattern[bytes]]:
    """(what every name starts with, in lower case; a pattern of the named fields at a
    line start)."""
    encoded = [n.encode("ascii", "replace") for n in names]
    alternatives = b"|".join(re.escape(n) for n in encoded)
    field = re.compile(rb"(?im)^(?:" + alternatives + rb")[ \t]*:(" + _LINE + rb"(?:\r?\n[ \t]"
                       + _LINE + rb")*)(?:\r?\n|\Z)")
    return os.path.commonprefix([n.lower() for n in encoded]), field


def replace_field(head: bytes, name: str, value: str, eol: bytes) -> bytes:
    """``head`` (a header section, with or without its blank line) with the first field
    ``name`` (and its continuation lines) replaced by ``name: value``, or with that
    field added after the last one when there is none."""
    line = f"{name}: {value}".encode("latin-1") + eol
    fields = named(head, (name,))
    if fields:
        return head[:fields[0].start] + line + head[fields[0].end:]
    end = section_end(head)
    return head[:end] + line + head[end:]

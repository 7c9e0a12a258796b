"""BAD-HEADER findings with the whole-section pre-check: the same as a look at each line.

``check`` looks for 8-bit octets and control characters in the whole section once and
at each line only when there are some; the per-line form it replaced is kept here.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.rules.badheader import (
    CODES,
    MAX_LINE,
    REQUIRED,
    SINGLE,
    SOURCE,
    _show,
    check,
    header_section,
)
from scanner.task import Hit

_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_NON_ASCII = re.compile(rb"[\x80-\xff]")


def old_check(raw: bytes, smtputf8: bool = False) -> list[Hit]:  # noqa: C901 - as it was
    found: dict[str, str] = {}
    counts: dict[str, int] = {}
    current = ""
    for number, line in enumerate(header_section(raw), 1):
        if line[:1] in (b" ", b"\t"):
            if not line.strip(b" \t"):
                found.setdefault("BAD_HEADER_EMPTY_LINE", f"{current or '?'}: line {number}")
        else:
            m = _NAME.match(line)
            if m is None:
                found.setdefault("BAD_HEADER_SYNTAX", f"line {number}: {_show(line)}")
                current = ""
            else:
                current = m.group(0)[:-1].rstrip(b" \t").decode("ascii")
                key = current.lower()
                counts[key] = counts.get(key, 0) + 1
        if len(line) > MAX_LINE:
            found.setdefault("BAD_HEADER_LONG_LINE",
                             f"{current or '?'}: line {number} has {len(line)} octets")
        if not smtputf8 and _NON_ASCII.search(line):
            found.setdefault("BAD_HEADER_8BIT", f"{current or '?'}: line {number}")
        if _CONTROL.search(line):
            found.setdefault("BAD_HEADER_CONTROL", f"{current or '?'}: line {number}")
    missing = [name for name in REQUIRED if counts.get(name.lower(), 0) == 0]
    if missing:
        found["BAD_HEADER_MISSING"] = ", ".join(missing)
    dups = [f"{name} x{counts[name.lower()]}" for name in SINGLE
            if counts.get(name.lower(), 0) > 1]
    if dups:
        found["BAD_HEADER_DUPLICATE"] = ", ".join(dups)
    return [Hit(symbol, options=(f"BAD-HEADER-{CODES[symbol]}", detail), source=SOURCE)
            for symbol, detail in sorted(found.items(), key=lambda kv: CODES[kv[0]])]


PIECES = st.sampled_from([
    b"From: a@b.test", b"Subject: hi", b"To: x", b"X-8: caf\xc3\xa9", b"X-Ctl: a\x01b",
    b"X-Del: \x7f", b"X-Cr: a\rb", b"X-Nul: \x00", b"\tcontinued", b" \t", b"no colon",
    b"From ", b"Date: now", b"X-Hi: \xff", b"\te\x80", b"\x1b[0m", b"X: \x0b\x0c",
])


@settings(max_examples=3000, deadline=None)
@given(st.lists(PIECES, max_size=10), st.booleans())
def test_findings_as_the_per_line_form(lines: list[bytes], smtputf8: bool) -> None:
    raw = b"\r\n".join(lines) + b"\r\n\r\nbody \x80\x01\r\n"
    assert check(raw, smtputf8) == old_check(raw, smtputf8)

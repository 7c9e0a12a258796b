"""amavis's BAD-HEADER checks on the message's top-level header section.

Each finding is one symbol (category BAD-HEADER in ``scanner/data/scores/badheader.toml``)
whose first option is amavis's minor code, ``BAD-HEADER-<n>``, followed by a detail
naming the field and line:

===================  ==  =====================================================
symbol               n   finding
===================  ==  =====================================================
BAD_HEADER_8BIT      2   non-ASCII octets, and the message did not come with SMTPUTF8
BAD_HEADER_CONTROL   3   control characters (NUL, bare CR, other C0 except TAB)
BAD_HEADER_EMPTY_LINE 4  a folded line made of white space only
BAD_HEADER_LONG_LINE 5   a line longer than 998 octets (RFC 5322 2.1.1)
BAD_HEADER_SYNTAX    6   a line that is neither ``name:`` nor a continuation
BAD_HEADER_MISSING   7   no ``From:`` field (a missing Date is a scored rule)
BAD_HEADER_DUPLICATE 8   a field allowed once (RFC 5322 3.6) appears more than once
===================  ==  =====================================================

Work is linear in the header size; a 1 MB line is one long-line finding.
"""

from __future__ import annotations

import re

from scanner.headerfields import blank_line
from scanner.task import Hit

MAX_LINE = 998
SINGLE = ("Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Message-ID", "In-Reply-To",
          "References", "Subject")
REQUIRED = ("From",)
"""Date is required too (RFC 5322), but MTAs add it on submission; its absence is scored
by the SC_MISSING_DATE rule instead of changing the category."""
CODES = {"BAD_HEADER_8BIT": 2, "BAD_HEADER_CONTROL": 3, "BAD_HEADER_EMPTY_LINE": 4,
         "BAD_HEADER_LONG_LINE": 5, "BAD_HEADER_SYNTAX": 6, "BAD_HEADER_MISSING": 7,
         "BAD_HEADER_DUPLICATE": 8}
SOURCE = "bad_header"
_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_NON_ASCII = re.compile(rb"[\x80-\xff]")


def header_section(raw: bytes) -> list[bytes]:
    """Lines of the top-level header section (line ends removed; bare CR kept)."""
    lines: list[bytes] = []
    end, _ = blank_line(raw)
    for line in (raw[: end + 1] if end >= 0 else raw).split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            break
        lines.append(line)
    if lines and lines[0].startswith(b"From ") and not _NAME.match(lines[0]):
        lines = lines[1:]  # mbox separator
    return lines


def check(raw: bytes, smtputf8: bool = False) -> list[Hit]:
    """BAD-HEADER findings of a message (one hit per kind, first occurrence named)."""
    found: dict[str, str] = {}
    counts: dict[str, int] = {}
    current = ""
    lines = header_section(raw)
    # most sections have neither: one look at all of it spares two per line
    joined = b" ".join(lines)
    eight_bit = not smtputf8 and not joined.isascii()
    control = _CONTROL.search(joined) is not None
    for number, line in enumerate(lines, 1):
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
        if eight_bit and _NON_ASCII.search(line):
            found.setdefault("BAD_HEADER_8BIT", f"{current or '?'}: line {number}")
        if control and _CONTROL.search(line):
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


def _show(line: bytes) -> str:
    text = line[:60].decode("latin-1")
    return re.sub(r"[^\x20-\x7e]", "?", text) + ("..." if len(line) > 60 else "")

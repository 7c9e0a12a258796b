"""The ``Authentication-Results:`` header (RFC 8601) we add to verified mail.

One header with our authserv-id and one resinfo per method, folded one per line::

    Authentication-Results: mx.example.org;
        spf=pass smtp.mailfrom=alice@example.com;
        dkim=pass header.d=example.com header.s=s1 header.b=AbCdEfGh;
        dmarc=pass (p=reject dis=none) header.from=example.com;
        arc=none

RFC 8601 section 5 asks whoever adds the header to remove those already present that
claim our authserv-id: a sender can forge ``dkim=pass`` under our name for the mail
client or a Sieve rule to believe. :func:`own_fields` finds them in the received bytes
(the authserv-id after optional comments, compared without case; quoted or not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scanner.headerfields import named

_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@]+$")


@dataclass(slots=True)
class ResInfo:
    """One ``method=result (comment) ptype.property=value ...`` item."""

    method: str
    result: str
    comment: str = ""
    props: list[tuple[str, str]] = field(default_factory=list)

    def render(self) -> str:
        text = f"{self.method}={self.result}"
        if self.comment:
            text += f" ({_comment(self.comment)})"
        for key, value in self.props:
            if value:
                text += f" {key}={_value(value)}"
        return text


def header(authserv_id: str, items: list[ResInfo]) -> tuple[str, str]:
    """(name, value) ready for ``task.add_headers``; ``none`` when nothing was checked."""
    if not items:
        return "Authentication-Results", f"{authserv_id}; none"
    body = ";\r\n\t".join(i.render() for i in items)
    return "Authentication-Results", f"{authserv_id};\r\n\t{body}"


def own_fields(raw: bytes, authserv_id: str) -> list[tuple[int, int]]:
    """Byte ranges (start, end) of the header fields of ``raw`` that are
    ``Authentication-Results`` with ``authserv_id`` as their authserv-id."""
    wanted = authserv_id.strip().lower()
    found = []
    for hf in named(raw, ("Authentication-Results",)):
        first = next(iter(tokens(hf.value.decode("utf-8", "replace"))), None)
        if first is not None and first.kind in (_WORD, _QUOTED) and \
                first.text.lower() == wanted:
            found.append((hf.start, hf.end))
    return found


def read_results(value: bytes) -> list[ResInfo]:
    """The resinfo items of an Authentication-Results value (its authserv-id first),
    comments removed; method, result and property names in lower case. Read as RFC
    8601's grammar says: a ``;`` ends an item only outside a quoted string and a comment
    (comments nest; a backslash escapes the next character in both); an unclosed quoted
    string or comment runs to the end of the value. Never raises."""
    return _resinfos(_segments(tokens(value.decode("utf-8", "replace")))[1:])


def aar_results(value: bytes) -> list[ResInfo]:
    """The resinfo items of an ARC-Authentication-Results value (``i=N;`` first, then
    an Authentication-Results payload, RFC 8617 4.1.1), read as :func:`read_results`."""
    return _resinfos(_segments(tokens(value.decode("utf-8", "replace")))[2:])


@dataclass(frozen=True, slots=True)
class Token:
    """A word, a quoted string's content (unescaped), ``;`` or ``=``; ``glued`` when no
    white space or comment stands between it and the token before."""

    kind: str
    text: str
    glued: bool = False


_WORD, _QUOTED, _SEMI, _EQUAL = "word", "quoted", ";", "="
_WHITE = " \t\r\n"


def tokens(text: str) -> list[Token]:
    """The tokens of an Authentication-Results value, comments and white space left out."""
    out: list[Token] = []
    at, glued = 0, False
    while at < len(text):
        char = text[at]
        if char in _WHITE or char == "(":
            at = _comment_end(text, at) if char == "(" else at + 1
            glued = False
            continue
        if char == '"':
            value, at = _quoted(text, at)
            out.append(Token(_QUOTED, value, glued))
        elif char in ";=":
            out.append(Token(char, char, glued))
            at += 1
        else:
            end = at
            while end < len(text) and text[end] not in _WHITE and text[end] not in '();="':
                end += 1
            out.append(Token(_WORD, text[at:end], glued))
            at = end
        glued = True
    return out


def _comment_end(text: str, at: int) -> int:
    """Where the comment opening at ``at`` ends (nested comments and escapes within)."""
    depth = 0
    while at < len(text):
        char = text[at]
        if char == "\\":
            at += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return at + 1
        at += 1
    return at


def _quoted(text: str, at: int) -> tuple[str, int]:
    """The content of the quoted string opening at ``at`` (escapes removed), and where
    it ends."""
    out, at = [], at + 1
    while at < len(text) and text[at] != '"':
        if text[at] == "\\" and at + 1 < len(text):
            at += 1
        out.append(text[at])
        at += 1
    return "".join(out), at + 1


def _segments(found: list[Token]) -> list[list[Token]]:
    """The tokens between top-level ``;``."""
    parts: list[list[Token]] = [[]]
    for token in found:
        if token.kind == _SEMI:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def _resinfos(parts: list[list[Token]]) -> list[ResInfo]:
    items = []
    for part in parts:
        if len(part) < 3 or part[0].kind != _WORD or part[1].kind != _EQUAL:
            continue  # "none" or garbage
        (method, result), *props = _pairs(part)
        if result:
            items.append(ResInfo(method.partition("/")[0].strip().lower(), result.lower(),
                                 props=[(k.lower(), v) for k, v in props if k]))
    return items


def _pairs(part: list[Token]) -> list[tuple[str, str]]:
    """The ``name=value`` pairs of one resinfo; a value is a word or quoted string and
    what is glued to it (``"a b"@example.com``)."""
    pairs, at = [], 0
    while at + 1 < len(part):
        name, equal = part[at], part[at + 1]
        if name.kind != _WORD or equal.kind != _EQUAL:
            at += 1
            continue
        at += 2
        pieces = []
        while at < len(part) and part[at].kind in (_WORD, _QUOTED) and \
                (not pieces or part[at].glued):
            pieces.append(part[at])
            at += 1
        pairs.append((name.text, _joined(pieces)))
    return pairs


def _joined(pieces: list[Token]) -> str:
    if len(pieces) == 1:
        return pieces[0].text
    return "".join(_value(p.text) if p.kind == _QUOTED else p.text for p in pieces)


def _value(value: str) -> str:
    """A property value as a token, or a quoted string when it needs one."""
    if _TOKEN.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{_printable(escaped)}"'


def _comment(text: str) -> str:
    clean = _printable(text).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return clean[:200]


def _printable(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)

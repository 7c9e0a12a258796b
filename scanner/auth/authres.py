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
_COMMENT = re.compile(rb"\((?:[^()\\]|\\.)*\)")
_EQUALS = re.compile(r"\s*=\s*")
_AUTHSERV_ID = re.compile(rb'\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;()"]+))')


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
    wanted = authserv_id.strip().lower().encode("ascii", "replace")
    found = []
    for hf in named(raw, ("Authentication-Results",)):
        value = hf.value.replace(b"\r\n", b"").replace(b"\n", b"")
        for _ in range(3):  # comments may nest: take the innermost ones out first
            value = _COMMENT.sub(b" ", value)
        ident = _AUTHSERV_ID.match(value)
        if ident is None:
            continue
        text = ident.group(1) if ident.group(1) is not None else ident.group(2)
        if text.replace(b"\\", b"").lower() == wanted:
            found.append((hf.start, hf.end))
    return found


def read_results(value: bytes) -> list[ResInfo]:
    """The resinfo items of an Authentication-Results value (after its authserv-id),
    comments removed (an unclosed one to the end); method, result and property names
    in lower case. A quoted value
    holding ``;`` is not supported: such an item is read cut short, never raised on."""
    text = value.replace(b"\r\n", b"").replace(b"\n", b"")
    for _ in range(3):
        text = _COMMENT.sub(b" ", text)
    text = text.partition(b"(")[0]  # an unclosed comment runs to the end
    items = []
    for part in _EQUALS.sub("=", text.decode("utf-8", "replace")).split(";")[1:]:
        words = part.split()
        method, _, result = (words[0] if words else "").partition("=")
        if not method or not result:
            continue  # "none" or garbage
        props = [(k.lower(), v.strip('"')) for k, _, v in (w.partition("=") for w in words[1:])
                 if v]
        items.append(ResInfo(method.lower(), result.lower(), props=props))
    return items


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

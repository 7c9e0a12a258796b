"""The ``Authentication-Results:`` header (RFC 8601) we add to verified mail.

One header with our authserv-id and one resinfo per method, folded one per line::

    Authentication-Results: mx.example.org;
        spf=pass smtp.mailfrom=alice@example.com;
        dkim=pass header.d=example.com header.s=s1 header.b=AbCdEfGh;
        dmarc=pass (p=reject dis=none) header.from=example.com;
        arc=none
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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

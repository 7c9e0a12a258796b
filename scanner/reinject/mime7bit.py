"""Convert a MIME message's 8-bit parts to 7bit (quoted-printable or base64).

For a next hop that does not offer 8BITMIME (RFC 6152 section 3: the client converts
the message to 7bit or does not deliver it), as Postfix's smtp client does: each leaf
part whose body has 8-bit octets under an identity encoding (none, ``7bit``, ``8bit``)
is re-encoded, ``text/*`` as quoted-printable, anything else as base64, and its
``Content-Transfer-Encoding`` field says so; a multipart or ``message/rfc822`` part
labelled ``8bit`` is relabelled ``7bit``. Everything else keeps its octets.

What cannot be converted safely gives ``None``: a message without ``MIME-Version``
(its charset and structure are unknown), 8-bit octets in a header section or in a
multipart's preamble or epilogue, a multipart without its boundary or closing
delimiter, 8-bit octets under ``binary``, base64 or quoted-printable, another
``message/*`` type, 8-bit octets inside ``multipart/signed`` or
``multipart/encrypted`` (RFC 1847: converting them voids the signature), or nesting
deeper than :data:`MAX_DEPTH`.

The input's lines end in CRLF (the reinjection client makes them so).
"""

from __future__ import annotations

import base64
import binascii
import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from scanner.headerfields import replace_field

MAX_DEPTH = 20
_IDENTITY = ("7bit", "8bit")
_SIGNED = ("multipart/signed", "multipart/encrypted")
_MIME_VERSION = re.compile(rb"^mime-version[ \t]*:", re.IGNORECASE | re.MULTILINE)


def to_7bit(message: bytes) -> bytes | None:
    """``message`` with every 8-bit part re-encoded, or ``None`` when that is unsafe."""
    head, _, _ = _split(message)
    if not _MIME_VERSION.search(head):
        return None
    return _entity(message, "text/plain", 0)


def _split(entity: bytes) -> tuple[bytes, bytes, bytes]:
    """Header section (each field line with its CRLF), the empty line, the body."""
    if entity.startswith(b"\r\n"):
        return b"", b"\r\n", entity[2:]
    end = entity.find(b"\r\n\r\n")
    if end < 0:
        return entity, b"", b""
    return entity[:end + 2], b"\r\n", entity[end + 4:]


def _fields(head: bytes, default: str) -> tuple[Message, str, str]:
    """The parsed header section, the content type and the transfer encoding."""
    msg = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n")
    if "Content-Type" not in msg:
        msg.set_default_type(default)
    cte = str(msg.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    return msg, msg.get_content_type(), cte


def _entity(entity: bytes, default: str, depth: int) -> bytes | None:
    if entity.isascii():
        return entity
    head, sep, body = _split(entity)
    if not head.isascii() or depth > MAX_DEPTH:
        return None
    msg, ctype, cte = _fields(head, default)
    if cte not in _IDENTITY:
        return None  # binary, or 8-bit octets where an encoding says there are none
    if ctype in _SIGNED:
        return None  # RFC 1847: re-encoding the content would void its signature
    if msg.get_content_maintype() == "multipart":
        boundary = msg.get_boundary()
        inner = None if not boundary else _multipart(
            body, boundary.encode("ascii", "replace"),
            "message/rfc822" if ctype == "multipart/digest" else "text/plain", depth)
        return None if inner is None else _relabel(head, cte, "7bit") + sep + inner
    if ctype == "message/rfc822":
        inner = _entity(body, "text/plain", depth + 1)
        return None if inner is None else _relabel(head, cte, "7bit") + sep + inner
    if msg.get_content_maintype() == "message":
        return None  # message/global, partial, external-body: no encoding to give them
    if msg.get_content_maintype() == "text":
        return _set_cte(head, "quoted-printable") + sep + _quoted_printable(body)
    encoded = base64.encodebytes(body).rstrip(b"\n").replace(b"\n", b"\r\n")
    return _set_cte(head, "base64") + sep + encoded


def _multipart(body: bytes, boundary: bytes, default: str, depth: int) -> bytes | None:
    """The body of a multipart with each part converted (RFC 2046 5.1.1: the CRLF
    before a delimiter line belongs to it)."""
    delimiter = re.compile(rb"(?:\A|\r\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r\n|\Z)")
    marks = list(delimiter.finditer(body))
    closing = next((n for n, m in enumerate(marks) if m.group(1)), None)
    if closing is None or not body[:marks[0].start()].isascii():
        return None
    out = bytearray(body[:marks[0].start()])
    for mark, following in zip(marks[:closing], marks[1:closing + 1], strict=True):
        out += mark.group(0)
        part = body[mark.end():following.start()]
        if part.startswith(b"\r\n"):
            out += b"\r\n"
            part = part[2:]
        converted = _entity(part, default, depth + 1)
        if converted is None:
            return None
        out += converted
    epilogue = body[marks[closing].start():]
    return bytes(out) + epilogue if epilogue.isascii() else None


def _relabel(head: bytes, cte: str, value: str) -> bytes:
    """A composite part's ``8bit`` label becomes ``7bit`` (an absent one stays absent)."""
    return _set_cte(head, value) if cte == "8bit" else head


def _set_cte(head: bytes, value: str) -> bytes:
    """``head`` with its Content-Transfer-Encoding field (in place) saying ``value``."""
    return replace_field(head, "Content-Transfer-Encoding", value, b"\r\n")


def _quoted_printable(body: bytes) -> bytes:
    """RFC 2045 6.7 quoted-printable of CRLF lines, line breaks kept as they are."""
    lines = body.split(b"\r\n")
    encoded = [binascii.b2a_qp(line, quotetabs=False, istext=False) for line in lines]
    return b"\r\n".join(e.replace(b"\n", b"\r\n") for e in encoded)

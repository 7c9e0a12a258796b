"""The text parts the rules' views read, chosen and typed as SpamAssassin does.

From the decoders' part tree when the pipeline built one (MIME leaves only, not archive
members; a text part that merely looks like a message stays text, since only
message/rfc822 and message/global parts are messages), else from a small MIME walk of
the raw bytes. Types as SpamAssassin reads them (:func:`sa_type`): every text/* type but
text/html, text/calendar and text/x-vcard is text/plain, and so is a multipart no
delimiter splits (as Python's ``email`` shows it).
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any

from decoders.mime import UNSPLIT
from decoders.mimeutil import Entity, leading_type
from scanner.rules import headers as hdr

_TEXT_TYPE = re.compile(r"text\b")
_OWN_TEXT_TYPES = frozenset({"text/html", "text/calendar", "text/x-vcard"})
_CHARSET_PARAM = re.compile(r"charset\s*=\s*\"?([^\";\s]+)", re.I)
_NAME_PARAM = re.compile(r"name\s*=\s*\"?([^\";]+)", re.I)
_HTML_NAME = re.compile(r"\.s?html?$", re.I)


@dataclass(slots=True)
class TextPart:
    """One MIME leaf: its content type, charset, headers and decoded octets."""

    ctype: str
    charset: str
    data: bytes
    headers: hdr.HeaderBlock
    name: str = ""
    source: Any = None  # the decoders' part it was made from, if any (its render cache)

    @property
    def effective_type(self) -> str:
        """The type the rules read the part as: a part named *.html or *.shtml is
        text/html whatever it declares (SpamAssassin)."""
        return "text/html" if _HTML_NAME.search(self.name) else self.ctype


def _content_type(block: hdr.HeaderBlock) -> tuple[str, str, str]:
    values = block.raw("Content-Type")
    value = hdr.unfold(values[-1]).decode("latin-1") if values else ""
    ctype = sa_type(leading_type(value) or value.split(";", 1)[0].strip().lower())
    m = _CHARSET_PARAM.search(value)
    name = _NAME_PARAM.search(value)
    return ctype, (m.group(1).lower() if m else ""), (name.group(1) if name else "")


def sa_type(ctype: str) -> str:
    """A MIME type as SpamAssassin reads it: none, and every text/* type but
    text/html, text/calendar and text/x-vcard, is text/plain (so text/enriched and
    text/rfc822-headers parts are body text)."""
    if not ctype or (_TEXT_TYPE.match(ctype) and ctype not in _OWN_TEXT_TYPES):
        return "text/plain"
    return ctype


def leaves_from_parts(parts: Sequence[Any]) -> list[TextPart]:
    """MIME leaves of the decoders' part tree (children of ``mail`` parts).

    A part the decoders read as a message by its content alone (text that starts with
    header-like lines) is a leaf as declared, as SpamAssassin reads it: only
    message/rfc822 and message/global parts are messages. Its MIME header block is
    lost (the decoders replace it by the lines read as headers): the leaf gets its
    declared Content-Type (text/plain when none), no charset.
    """
    by_index = {p.index: p for p in parts}
    sniffed = {p.index for p in parts if _sniffed_mail(p, by_index)}
    out: list[TextPart] = []
    for part in parts:
        parent = by_index.get(part.parent) if part.parent is not None else None
        if parent is None or parent.detected_type != "mail" or \
                (sniffed and _inside(part, sniffed, by_index)):
            continue
        if part.index in sniffed:
            ctype = sa_type((part.declared_type or "").lower())
            block = hdr.HeaderBlock(order=[("Content-Type", f" {ctype}\n".encode(
                "utf-8", "replace"))])
            out.append(TextPart(ctype, "", part.data(), block, part.name or "", part))
            continue
        if part.detected_type == "mail":
            continue
        block = hdr.HeaderBlock(order=[(n, b" " + v.encode("utf-8", "replace") + b"\n")
                                       for n, v in part.headers])
        ctype, charset, name = _content_type(block)
        if not block.raw("Content-Type") and part.declared_type:
            ctype = sa_type(part.declared_type.lower())
        if UNSPLIT in part.flags:  # a multipart no delimiter splits: its body is text
            ctype = "text/plain"
        out.append(TextPart(ctype, charset, part.data(), block, part.name or name, part))
    return out


def _sniffed_mail(part: Any, by_index: dict[int, Any]) -> bool:
    """A part inside a message, read as a message by its content, but declared as
    something else than a message (a text/plain body that starts "From: ..."); one
    with no Content-Type is text/plain too, but in a multipart/digest."""
    parent = by_index.get(part.parent) if part.parent is not None else None
    if part.detected_type != "mail" or parent is None or parent.detected_type != "mail":
        return False
    declared = (part.declared_type or "").lower()
    if not declared:
        return not any(n.lower() == "content-type" and "multipart/digest" in v.lower()
                       for n, v in parent.headers)
    return not declared.startswith("message/")


def _inside(part: Any, sniffed: set[int], by_index: dict[int, Any]) -> bool:
    """Whether an ancestor of ``part`` is in ``sniffed`` (its content is that leaf's)."""
    seen = 0
    index = part.parent
    while index is not None and seen < 1000:
        if index in sniffed:
            return True
        ancestor = by_index.get(index)
        index = ancestor.parent if ancestor is not None else None
        seen += 1
    return False


def leaves_from_raw(raw: bytes) -> list[TextPart]:
    """MIME leaves by the standard library's parser (when there is no part tree), with
    parameters parsed by :class:`decoders.mimeutil.Entity` (linear, once per header)."""
    msg = email.message_from_bytes(raw, _class=Entity, policy=email.policy.compat32)
    out: list[TextPart] = []
    for sub in msg.walk():
        if sub.is_multipart():
            continue
        out.append(_leaf(sub))
    return out


def _leaf(sub: Message) -> TextPart:
    block = hdr.HeaderBlock(order=[(str(n), b" " + str(v).encode("utf-8", "replace") + b"\n")
                                   for n, v in sub.items()])
    ctype, charset, name = _content_type(block)
    if ctype.startswith("multipart/"):  # the stdlib found no delimiter: the body is text
        ctype = "text/plain"
    try:
        data = sub.get_payload(decode=True)
    except (ValueError, AssertionError):
        data = None
    if not isinstance(data, bytes):
        payload = sub.get_payload()
        data = payload.encode("latin-1", "replace") if isinstance(payload, str) else b""
    return TextPart(ctype, charset, data, block, sub.get_filename() or name)

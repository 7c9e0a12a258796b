"""The body edit of a disclaimer: text appended to the first text/plain part and put
before ``</body>`` of the first text/html part, natively (amavis runs the external
``altermime --disclaimer=FILE --disclaimer-html=FILE``).

Every other byte of the message stays as it was: header fields, other parts, boundaries.
An edited part keeps its Content-Transfer-Encoding (7bit, 8bit, binary,
quoted-printable, base64) and its charset; its original encoded bytes stay too, the
disclaimer going in between them, except for base64, which is encoded again. When the
charset cannot hold the disclaimer (or is one whose bytes are not ASCII's, UTF-16 say),
the part is written again in UTF-8 and its charset parameter changed; a 7bit part that
then needs 8-bit bytes becomes quoted-printable. A part whose bytes are not valid in
its declared charset is left alone (an edit would mix two encodings: mojibake).

Signed or encrypted mail is never touched: multipart/signed, multipart/encrypted,
application/pkcs7-mime, and text holding an inline PGP signature or message; neither
is a message whose text part is over :data:`MAX_PART` bytes. When one of the two parts
cannot take its disclaimer the message is left as it is, so two alternatives never
differ. Attachments and forwarded messages (message/rfc822) are never edited.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
from dataclasses import dataclass
from email.message import Message

from scanner.headerfields import blank_line, line_end, named, replace_field, section_end
from scanner.pipeline.parse import parse_headers

MAX_PART = 5 * 1024 * 1024
"""A text part bigger than this (bytes, encoded) gets no disclaimer."""
MAX_DEPTH = 20
"""Multipart nesting looked into for the text parts."""
SEALED = ("multipart/signed", "multipart/encrypted", "application/pkcs7-mime",
          "application/x-pkcs7-mime")
PGP_MARKS = ("-----BEGIN PGP SIGNED MESSAGE-----", "-----BEGIN PGP MESSAGE-----")
ENCODINGS = ("7bit", "8bit", "binary", "quoted-printable", "base64")


class Untouched(Exception):
    """The message must pass as it is; the text says why (for the log)."""


@dataclass(frozen=True, slots=True)
class Leaf:
    """A text part: its byte range in the message, its header fields parsed."""

    start: int
    end: int
    head: Message


def add_disclaimer(raw: bytes, text: str, html_text: str) -> bytes:
    """``raw`` with ``text`` after the first text/plain part's text and ``html_text``
    before ``</body>`` of the first text/html part (an empty one: no edit of that kind;
    no ``html_text``: ``text`` escaped). Raises :class:`Untouched` when nothing can be
    added (signed, no text part, ...)."""
    if not html_text and text:
        html_text = "<p>" + "<br>\n".join(html.escape(line)
                                           for line in text.rstrip("\n").split("\n")) + "</p>"
    head = parse_headers(raw[:section_end(raw)])
    if head.get_content_type() in SEALED:
        raise Untouched(f"{head.get_content_type()} is not changed")
    found = _first_texts(raw, 0, len(raw), head, 0)
    eol = line_end(raw)
    edits = [(leaf, kind) for kind, leaf in found.items()
             if (text if kind == "text/plain" else html_text)]
    if not edits:
        raise Untouched("no text part to add a disclaimer to")
    new = raw
    for leaf, kind in sorted(edits, key=lambda e: -e[0].start):  # last first: offsets hold
        addition = text if kind == "text/plain" else html_text
        part = _edit_part(raw[leaf.start:leaf.end], leaf.head, kind, addition, eol)
        new = new[:leaf.start] + part + new[leaf.end:]
    return new


def _first_texts(raw: bytes, start: int, end: int, head: Message,
                 depth: int) -> dict[str, Leaf]:
    """The first text/plain and text/html part (not attachments) in ``raw[start:end]``,
    an entity whose header fields are ``head``, by type."""
    ctype = head.get_content_type()
    if ctype in SEALED:
        if depth == 0:
            raise Untouched(f"{ctype} is not changed")
        return {}
    if ctype in ("text/plain", "text/html"):
        attached = (head.get("Content-Disposition") or "").strip().lower()
        return {} if attached.startswith("attachment") else {ctype: Leaf(start, end, head)}
    boundary = head.get_param("boundary")
    # a digest's parts are messages unless they say otherwise: none is our text
    if not ctype.startswith("multipart/") or ctype == "multipart/digest" \
            or not isinstance(boundary, str) or depth >= MAX_DEPTH:
        return {}
    found: dict[str, Leaf] = {}
    for p_start, p_end in _parts(raw, start, end, boundary):
        part_head = parse_headers(raw[p_start:p_start + section_end(raw[p_start:p_end])])
        for kind, leaf in _first_texts(raw, p_start, p_end, part_head, depth + 1).items():
            found.setdefault(kind, leaf)
        if len(found) == 2:
            break
    return found


def _parts(raw: bytes, start: int, end: int, boundary: str) -> list[tuple[int, int]]:
    """The byte ranges of the body parts of a multipart entity (RFC 2046 5.1.1: the line
    end before a delimiter line belongs to it)."""
    delimiter = re.compile(rb"(?m)^--" + re.escape(boundary.encode("latin-1", "replace"))
                           + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    parts: list[tuple[int, int]] = []
    begin = -1
    for m in delimiter.finditer(raw, start, end):
        if begin >= 0:
            stop = m.start()
            stop -= 2 if raw[stop - 2:stop] == b"\r\n" else 1 if raw[stop - 1:stop] == b"\n" else 0
            parts.append((begin, max(begin, stop)))
        if m.group(1):
            return parts
        begin = m.end()
    return parts


def _body_start(part: bytes) -> int:
    """Where the body of an entity starts (after its blank line)."""
    if part.startswith(b"\r\n"):
        return 2
    if part.startswith(b"\n"):
        return 1
    _, after = blank_line(part)
    return after if after >= 0 else len(part)


def _edit_part(part: bytes, head: Message, kind: str, addition: str, eol: bytes) -> bytes:
    """One text entity (header fields and body) with the disclaimer added."""
    if len(part) > MAX_PART:
        raise Untouched(f"a {kind} part of {len(part)} bytes is over {MAX_PART}")
    cte = (head.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    if cte not in ENCODINGS:
        raise Untouched(f"unknown Content-Transfer-Encoding {cte!r}")
    charset = head.get_content_charset() or "us-ascii"
    body_at = _body_start(part)
    encoded = part[body_at:]
    try:
        codec = codecs.lookup(charset).name
        text = _decode(encoded, cte).decode(codec)
    except (LookupError, ValueError, binascii.Error) as exc:
        raise Untouched(f"a {kind} part in charset {charset!r} does not decode: {exc}") from None
    if any(mark in text for mark in PGP_MARKS):
        raise Untouched("inline PGP is not changed")
    t_eol = "\r\n" if "\r\n" in text else "\n" if "\n" in text else eol.decode()
    chunk, at = _placed(text, kind, addition, t_eol)
    if cte != "base64" and _ascii_based(codec):
        kept = _inserted(encoded, text, at, chunk, codec, cte, eol)
        if kept is not None:
            return part[:body_at] + kept
    return _rewritten(part[:body_at], text[:at] + chunk + text[at:], codec, cte, eol,
                      encoded.endswith(b"\n"))


def _decode(encoded: bytes, cte: str) -> bytes:
    if cte == "base64":
        return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", encoded))
    if cte == "quoted-printable":
        return binascii.a2b_qp(encoded)
    return encoded


def _placed(text: str, kind: str, addition: str, eol: str) -> tuple[str, int]:
    """(the text to insert, where in ``text``): plain after the text (a blank line
    between), HTML before the last ``</body>`` (``</html>``, else at the end)."""
    lines = eol.join(addition.rstrip("\r\n").replace("\r\n", "\n").split("\n"))
    if kind == "text/plain":
        ended = text.endswith("\n")
        return (eol if ended else eol + eol) + lines + (eol if ended else ""), len(text)
    lower = text.lower()
    at = lower.rfind("</body")
    at = at if at >= 0 else lower.rfind("</html")
    if at < 0:
        return eol + lines + (eol if text.endswith("\n") else ""), len(text)
    return lines + eol, at


def _ascii_based(codec: str) -> bool:
    """Whether the charset writes ASCII as ASCII, one byte each, with no state (so bytes
    can be put between its bytes)."""
    probe = "</body>\r\n= x"
    try:
        return probe.encode(codec) == probe.encode("ascii") and not codec.startswith("iso2022")
    except (UnicodeError, LookupError):
        return False


def _inserted(encoded: bytes, text: str, at: int, chunk: str, codec: str, cte: str,
              eol: bytes) -> bytes | None:
    """The encoded body with ``chunk`` put in at text position ``at``, the original bytes
    kept; None when the chunk cannot go in that way (not in the charset, 8-bit in a
    7bit part, the place not found in the encoded bytes)."""
    try:
        data = chunk.encode(codec)
    except UnicodeEncodeError:
        return None
    if cte == "7bit" and not data.isascii():
        return None
    if at == len(text):
        offset = len(encoded)
    else:
        offset = encoded.lower().rfind(text[at:at + 6].lower().encode("ascii", "replace"))
        if offset < 0:
            return None
    if cte == "quoted-printable":
        # in the middle of a line (before </body>): a soft line break first
        within = 0 < offset < len(encoded) and encoded[offset - 1:offset] != b"\n"
        data = (b"=" + eol if within else b"") + _qp(data, eol)
    return encoded[:offset] + data + encoded[offset:]


def _qp(data: bytes, eol: bytes) -> bytes:
    """Quoted-printable with the message's line ends (a text line end is one too)."""
    return binascii.b2a_qp(data.replace(b"\r\n", b"\n"), istext=True).replace(b"\n", eol)


def _rewritten(head: bytes, text: str, codec: str, cte: str, eol: bytes,
               ended: bool) -> bytes:
    """An entity written again: its charset if it holds ``text`` and keeps ASCII as it
    is, else UTF-8 (the Content-Type parameter changed); its encoding, or
    quoted-printable for a 7bit part that now holds 8-bit bytes. Base64 ends with a
    line end when the original (``ended``) did."""
    try:
        data = text.encode(codec) if _ascii_based(codec) else None
    except UnicodeEncodeError:
        data = None
    if data is None:
        data = text.encode("utf-8")
        head = _with_charset(head, "UTF-8", eol)
    new_cte = "quoted-printable" if cte == "7bit" and not data.isascii() else cte
    if new_cte != cte:
        head = replace_field(head, "Content-Transfer-Encoding", new_cte, eol)
    if new_cte == "base64":
        b64 = base64.b64encode(data)
        body = eol.join(b64[i:i + 76] for i in range(0, len(b64), 76))
        body += eol if ended else b""
    elif new_cte == "quoted-printable":
        body = _qp(data, eol)
    else:
        body = data
    return head + body


def _with_charset(head: bytes, charset: str, eol: bytes) -> bytes:
    """``head`` with the Content-Type's charset parameter set to ``charset``."""
    fields = named(head, ("Content-Type",))
    if not fields:
        if not named(head, ("MIME-Version",)):
            head = replace_field(head, "MIME-Version", "1.0", eol)
        return replace_field(head, "Content-Type", f"text/plain; charset={charset}", eol)
    value = fields[0].value.decode("latin-1")
    param = re.compile(r"""(;\s*charset\s*=\s*)("[^"]*"|[^\s;()]*)""", re.IGNORECASE)
    if param.search(value):
        value = param.sub(lambda m: m.group(1) + charset, value, count=1)
    else:
        value = value.rstrip() + f"; charset={charset}"
    return replace_field(head, "Content-Type", value.strip(), eol)

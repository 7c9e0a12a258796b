"""MIME decoder: a message (type ``mail``) -> its leaf body parts, flattened like amavis.

Multiparts are split on their boundary lines (nested multiparts are walked in place,
up to ``MAX_NESTING``; deeper ones stay leaves and the part gets ``DECODE_LIMIT_DEPTH``;
a multipart without a boundary parameter is split on its first ``--token`` line and
flagged ambiguous; one no delimiter line splits is one text/plain leaf, as Python's
``email`` shows it; a base64 or quoted-printable multipart is split decoded, flagged
ambiguous, when only its decoded body holds delimiter lines; a nested boundary that
clashes with an enclosing one is flagged ambiguous), each leaf body is transfer-decoded
(base64, quoted-printable, uuencode, 7bit/8bit/binary) and emitted with its headers,
declared type and decoded file name. ``message/rfc822`` bodies are emitted as raw
``mail`` parts, so each nested message is one decoding level and the depth limit
applies. text/plain and text/html bodies carry their decoded text (HTML converted).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from email.message import Message

from decoders.base import Child, LimitExceeded
from decoders.context import DecodeContext
from decoders.mimeutil import (
    ambiguity,
    content_type,
    decode_transfer,
    filenames,
    header_list,
    parse_headers,
    parse_known,
    split_header_section,
    to_text,
    transfer_encoding,
)
from decoders.part import Part

MAX_NESTING = 64
MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
# flag of a multipart body no delimiter line splits: emitted whole, read as text/plain
UNSPLIT = "unsplit-multipart"
_MIXED_SECTION = "header fields after a line that is no field"


_NL = re.compile(rb"\n")


def _split(body: memoryview, boundary: str) -> Iterator[memoryview]:
    """Body parts between ``--boundary`` lines; stops at the closing delimiter."""
    pattern = re.compile(
        rb"(?:\A|\r?\n)--"
        + re.escape(boundary.encode("utf-8", "replace"))
        + rb"(--)?[ \t]*(?=\r?\n|\Z)"
    )
    start: int | None = None
    for m in pattern.finditer(body):
        if start is not None:
            yield body[start : m.start()]
        if m.group(1):
            return
        nl = _NL.search(body, m.end())
        start = len(body) if nl is None else nl.end()
    if start is not None and start < len(body):
        yield body[start:]  # unterminated last part


_FIRST_DELIMITER = re.compile(rb"(?:\A|\n)--([^\r\n]{1,70}?)[ \t]*\r?\n")


def guess_boundary(body: memoryview) -> str | None:
    """The boundary of a multipart that names none: its first ``--token`` line.

    clamd and some mail readers split such a body on its first delimiter line,
    others show it as text; the message is flagged ambiguous either way.
    """
    m = _FIRST_DELIMITER.search(body[: 64 * 1024])
    if m is None:
        return None
    return m.group(1).decode("latin-1").removesuffix("--") or None


def _flag_ambiguous(part: Part, ctx: DecodeContext, why: str) -> None:
    """Mark the message ambiguous (the first reason is kept)."""
    if "ambiguous" not in part.flags:
        part.flags.add("ambiguous")
        ctx.ambiguities[part.index] = why


def _clashes(inner: str, outer: str) -> bool:
    """Whether a delimiter line of the nested boundary is also one of the enclosing one's
    (the same boundary, or one that is the other plus ``--``).

    RFC 2046 forbids it; readers then disagree on whose line it is: Thunderbird gives
    it to the innermost open multipart, Python's email and this splitter to the outer
    one, so a part Thunderbird shows (an attachment included) is in no part here.
    """
    return inner == outer or inner == outer + "--" or outer == inner + "--"


class MimeDecoder:
    """Splits a message into its MIME leaf parts."""

    name = "mime"
    handles = frozenset({"mail"})
    order = 10

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        head, body, mixed = split_header_section(part.data())
        if mixed:
            _flag_ambiguous(part, ctx, _MIXED_SECTION)
        msg = parse_known(head, ctx.known_header)
        part.headers = header_list(msg)
        too_deep: list[bool] = []
        yield from self._entity(msg, body, ctx, 0, part, too_deep)
        if too_deep:  # after every other part is out: the branch beyond stays unread
            raise LimitExceeded("depth", f"{MAX_NESTING} nested multiparts")

    def _entity(
        self, msg: Message, body: memoryview, ctx: DecodeContext, nesting: int, part: Part,
        too_deep: list[bool], enclosing: tuple[str, ...] = (),
    ) -> Iterator[Child]:
        why = ambiguity(msg)
        if why is not None:
            _flag_ambiguous(part, ctx, why)
        ctype = content_type(msg)
        if not (ctype and ctype.startswith("multipart/")):
            yield self._leaf(msg, body, ctype, ctx)
            return
        if nesting >= MAX_NESTING:
            too_deep.append(True)
            yield self._leaf(msg, body, ctype, ctx)
            return
        boundary = msg.get_boundary() or guess_boundary(body)
        if boundary and not msg.get_boundary():
            _flag_ambiguous(part, ctx, f"{ctype} without boundary parameter")
        clash = next((b for b in enclosing if boundary and _clashes(boundary, b)), None)
        if clash is not None:
            _flag_ambiguous(part, ctx, f"nested boundary {boundary!r} clashes with {clash!r}")
        inner = (*enclosing, boundary) if boundary else enclosing
        if boundary:
            split = yield from self._children(body, boundary, ctx, nesting, part, too_deep,
                                              inner)
            if split:
                return
            decoded = self._encoded_multipart(msg, body, boundary)
            if decoded is not None:
                _flag_ambiguous(part, ctx, f"{ctype} with a Content-Transfer-Encoding")
                yield from self._children(decoded, boundary, ctx, nesting, part, too_deep,
                                          inner)
                return
        # no delimiter line: Python's email and webmail show the body as plain text
        leaf = self._leaf(msg, body, ctype, ctx, as_text=True)
        leaf.flags.add(UNSPLIT)
        yield leaf

    def _children(
        self, body: memoryview, boundary: str, ctx: DecodeContext, nesting: int, part: Part,
        too_deep: list[bool], enclosing: tuple[str, ...],
    ) -> Generator[Child, None, bool]:
        """The body parts of one multipart body; returns whether any delimiter split it."""
        split = False
        for chunk in _split(body, boundary):
            split = True
            ctx.check_time()
            head, sub_body, mixed = split_header_section(chunk)
            if mixed:
                _flag_ambiguous(part, ctx, _MIXED_SECTION)
            yield from self._entity(parse_headers(head), sub_body, ctx, nesting + 1, part,
                                    too_deep, enclosing)
        return split

    @staticmethod
    def _encoded_multipart(msg: Message, body: memoryview, boundary: str) -> memoryview | None:
        """The body of a multipart that declares base64 or quoted-printable (RFC 2045
        forbids it) and shows its delimiter lines only once decoded, else None.

        Python's email and Thunderbird show such a body as it is; readers that undo the
        encoding first find the parts, attachments included.
        """
        cte = transfer_encoding(str(msg.get("content-transfer-encoding", "") or ""))
        if cte not in ("base64", "quoted-printable"):
            return None
        decoded = memoryview(decode_transfer(body, cte))
        found = next(iter(_split(decoded, boundary)), None)
        return decoded if found is not None else None

    def _leaf(self, msg: Message, body: memoryview, ctype: str | None, ctx: DecodeContext,
              as_text: bool = False) -> Child:
        """One body part as a child; ``as_text``: read it as text/plain whatever its type."""
        cte = str(msg.get("content-transfer-encoding", "") or "")
        data = decode_transfer(body, cte)
        names = filenames(msg)
        child = Child(
            blob=ctx.blob(data),
            name=names[0] if names else None,
            declared_type=ctype,
            headers=header_list(msg),
            aliases=tuple(names[1:]),
        )
        if ctype in MESSAGE_TYPES:
            child.detected_type = "mail"
        elif as_text or (ctype in (None, "text/plain", "text/html")
                         and not (ctype is None and child.name)):
            charset = msg.get_content_charset() if msg.get("content-type") else None
            text = to_text(data, charset)
            if ctype == "text/html":
                child.html = text  # rendered only when someone reads Part.text
            else:
                child.text = text
        return child

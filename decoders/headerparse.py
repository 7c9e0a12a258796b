"""Parse a header section as the standard library's header-only parser does, faster.

Every message's top-level header section and every MIME part's are parsed into an
``email`` :class:`~email.message.Message` (compat32 policy, headers only). The stdlib's
feed parser does that line by line through a file-like buffer and a generator, about
an eighth of the filter's CPU per message when it runs no checks (a profile of the
spine, bench/throughput/README.md "Session 30"). Well-formed
sections (every line ends CRLF and is a ``Name: value`` field or a continuation of one,
ended by an empty line or by the end of the block, nothing after it) are split here
directly into the very fields, payload and defects that parser makes; anything else
(bare CR or LF, a line that is no field, a leading continuation, an mbox ``From ``
line, text after the empty line) goes to the stdlib's parser, so the result is the
stdlib's in every case (tests/decoders/test_headerparse.py compares the two on the
corpus and on malformed sections).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email import errors
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

# a field's first line: a name of printable ASCII but ':' (RFC 5322 ftext), then ':'
# (the stdlib's headerRE without its "From " and continuation branches)
_FIELD = re.compile(r"[\041-\071\073-\176]+:")


def parse_header_block(block: bytes, factory: Callable[..., Message] = Message) -> Message:
    """``BytesHeaderParser(_class=factory, policy=compat32).parsebytes(block)``."""
    msg = _parse_simple(block, factory)
    if msg is None:
        msg = BytesHeaderParser(_class=factory, policy=compat32).parsebytes(block)
    return msg


def _parse_simple(block: bytes, factory: Callable[..., Message]) -> Message | None:
    """The parse of a well-formed section, or None when the stdlib must do it."""
    text = block.decode("ascii", "surrogateescape")
    if not text.endswith("\r\n"):
        return None
    crlf = text.count("\r\n")
    if text.count("\r") != crlf or text.count("\n") != crlf:
        return None  # a bare CR or LF: the stdlib's line splitting decides
    lines = text.split("\r\n")
    lines.pop()  # the empty string after the last CRLF
    if lines and not lines[-1]:
        lines.pop()  # the empty line that ends the section
    fields: list[tuple[str, str]] = []
    name = ""
    value: list[str] = []
    for line in lines:
        if not line:
            return None  # an empty line before the end: the stdlib keeps what follows
        if line[0] in " \t":
            if not name:
                return None  # FirstHeaderLineIsContinuationDefect
            value.append(line)
            continue
        match = _FIELD.match(line)
        if match is None:
            return None  # no field: the stdlib ends the section here, with a defect
        if name:
            fields.append(_field(name, value))
        name = match.group()[:-1]
        value = [line[match.end():].lstrip(" \t")]
    if name:
        fields.append(_field(name, value))
    msg = factory(policy=compat32)
    for field in fields:
        msg.set_raw(*field)
    msg.set_payload("")
    if msg.get_content_maintype() == "multipart":  # as FeedParser.close() finds it
        compat32.handle_defect(msg, errors.MultipartInvariantViolationDefect())
    return msg


def _field(name: str, value: list[str]) -> tuple[str, str]:
    """compat32's ``header_source_parse``: the lines joined with their CRLFs, the first
    one's leading blanks and the trailing line ends gone."""
    return name, "\r\n".join(value).rstrip("\r\n")

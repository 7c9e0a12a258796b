"""Parse stage: the header section as an ``email`` Message, plus Postfix's queue id.

Parsing never fails: the lenient compat32 policy records defects instead of raising.
The full MIME tree is the decoders' job (unpack stage).
"""

from __future__ import annotations

import re
from email.message import Message

from decoders.headerparse import parse_header_block
from decoders.mimeutil import Entity, decode_words

# amavis's parse_message_id tokens: FWS, a comment, <msg-id>, anything else
_MSG_ID_TOKENS = re.compile(r"""[ \t]+|\((?:\\.|[^()\\]){0,999}\)"""
                            r"""|(<(?:"(?:\\.|[^"\\>]){0,999}"|\[(?:\\.|[^\]\\>]){0,999}\]"""
                            r"""|[^"<>\[\]\\])*>)|[^<( \t]+|.""", re.DOTALL)
_QUEUE_ID = re.compile(r"\bwith\s+\S+\s+id\s+([0-9A-Za-z]+)", re.IGNORECASE)
HEADER_SCAN_LIMIT = 1 << 20


def header_section(raw: bytes) -> bytes:
    """The bytes :func:`parse_headers` reads: the header section with the empty line
    after it (at most the first MiB)."""
    end = raw.find(b"\r\n\r\n", 0, HEADER_SCAN_LIMIT)
    return raw[: end + 4] if end >= 0 else raw[:HEADER_SCAN_LIMIT]


def parse_headers(raw: bytes) -> Message:
    """The header section of ``raw`` (at most the first MiB is looked at), parsed as the
    MIME decoder parses one (an :class:`Entity`, which reads parameters once, in linear
    time), so that the decoder can take this parse of the top-level section instead of
    its own."""
    return parse_header_block(header_section(raw), Entity)


def postfix_queue_id(msg: Message) -> str | None:
    """The queue id from the topmost Received header (Postfix wrote it), as amavis does."""
    received = msg.get("Received")
    if received is None:
        return None
    m = _QUEUE_ID.search(" ".join(str(received).split()))
    return m.group(1) if m else None


def header_text(msg: Message | None, name: str) -> str:
    """A header value as one clean line, or ''. Raw UTF-8 (RFC 6532) reads as text;
    bytes that are not UTF-8 become U+FFFD; RFC 2047 encoded words stay encoded."""
    if msg is None:
        return ""
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            text = " ".join(value.split())
            return text.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    return ""


def header_display(msg: Message | None, name: str) -> str:
    """A header value as a person should read it (in a notice, the quarantine index):
    :func:`header_text`, with the RFC 2047 encoded words of an ASCII field decoded; or
    ''."""
    text = header_text(msg, name)
    return " ".join(decode_words(text).split()) if text.isascii() else text


def message_id(msg: Message | None) -> str:
    """The Message-ID for the log line as amavis's ``parse_message_id`` finds it: the
    first ``<...>`` of the field (comments and text around it left out, so the field
    cannot add log fields of its own), else the whole field in ``<>``; raw UTF-8 as
    text (other bytes kept for ``printable`` to show as ``\\xNN``); or ''."""
    if msg is None:
        return ""
    raw = next((v for k, v in msg.raw_items() if k.lower() == "message-id"), None)
    if raw is None:
        return ""
    return parse_message_id(raw.encode("ascii", "surrogateescape")
                            .decode("utf-8", "surrogateescape"))


def parse_message_id(value: str) -> str:
    """amavis's ``parse_message_id`` of one field value: its first ``<...>``, else the
    whole value in ``<>``; '' for an empty value."""
    text = " ".join(value.split())
    found = [m.group(1) for m in _MSG_ID_TOKENS.finditer(text) if m.group(1)]
    if found:
        return found[0]
    return f"<{text.removeprefix('<').removesuffix('>').replace('>', '_')}>" if text else ""

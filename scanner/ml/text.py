"""Text extraction for the classifier: raw message bytes -> headers, body text, URLs, parts.

This is the one place the classifier looks inside a message, so that it can later be
swapped for the ``decoders`` package (its ``Part.text``) without touching the features.
Everything is lenient: any charset, broken MIME, binary junk or a truncated message gives
a :class:`MessageText` (possibly empty), never an exception.

Size limits (see :class:`ExtractLimits`) keep a 50 MB message cheap: only the first
``max_message_bytes`` of the raw message are parsed, only the first ``max_header_bytes``
of the header section are read, and only the first ``max_part_bytes`` of each decoded
text part are converted to text.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email.message import Message
from email.policy import compat32

from scanner.ml.charsets import decode_bytes, decode_header_value
from scanner.ml.html_text import html_to_text

_HEADER_LINE = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$")
_URL_IN_TEXT = re.compile(r"""(?i)\b(?:(?:https?|ftp)://|www\.)[^\s<>"'()\[\]{}]{2,}""")
_LOOKS_HTML = re.compile(r"(?i)<\s*(?:html|body|table|font|a\s+href|div|p)\b")


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    """How much of a message the classifier reads (the rest is ignored, not an error)."""

    max_message_bytes: int = 1 << 20
    max_header_bytes: int = 64 << 10
    max_part_bytes: int = 128 << 10
    max_parts: int = 64
    max_urls: int = 200


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One MIME leaf: declared type, charset, transfer encoding, file name, disposition."""

    content_type: str
    charset: str = ""
    encoding: str = ""
    filename: str = ""
    disposition: str = ""


@dataclass(slots=True)
class MessageText:
    """What the feature extractor reads from one message."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    body_text: str = ""
    html_tags: list[str] = field(default_factory=list)
    html_source: str = ""
    urls: list[str] = field(default_factory=list)
    parts: list[PartInfo] = field(default_factory=list)
    has_html: bool = False
    has_plain: bool = False
    truncated: bool = False
    defects: int = 0

    def header(self, name: str) -> str:
        """The first header of that (lower-case) name, decoded, or ``""``."""
        for key, value in self.headers:
            if key == name:
                return value
        return ""

    def header_all(self, name: str) -> list[str]:
        """Every header of that (lower-case) name, in message order."""
        return [value for key, value in self.headers if key == name]

    @property
    def attachments(self) -> list[PartInfo]:
        """Parts with a file name or an attachment disposition."""
        return [p for p in self.parts if p.filename or p.disposition == "attachment"]


def strip_mbox_from(raw: bytes) -> bytes:
    """Drop a leading mbox ``From `` separator line (a mailbox artefact, not a header)."""
    if raw.startswith(b"From "):
        newline = raw.find(b"\n")
        return b"" if newline < 0 else raw[newline + 1 :]
    return raw


def split_header_section(raw: bytes) -> tuple[bytes, bytes]:
    """Split raw message bytes into header section and body at the first empty line."""
    match = re.search(rb"\r?\n\r?\n", raw)
    if match is None:
        return raw, b""
    return raw[: match.start()], raw[match.end() :]


def parse_headers(section: bytes, limit: int) -> list[tuple[str, str]]:
    """Unfold and decode a header section: ``[(lower-case name, decoded value), ...]``."""
    headers: list[tuple[str, bytearray]] = []
    for line in section[:limit].splitlines():
        if line[:1] in (b" ", b"\t"):
            if headers:
                headers[-1][1].extend(b" " + line.strip())
            continue
        match = _HEADER_LINE.match(line)
        if match is None:
            continue  # junk line in the header section: ignore it
        headers.append((match.group(1).decode("ascii").lower(), bytearray(match.group(2))))
    out = []
    for name, value in headers:
        text = decode_bytes(bytes(value).strip(), "utf-8")
        out.append((name, decode_header_value(text)))
    return out


def message_text(raw: bytes | Message, limits: ExtractLimits | None = None) -> MessageText:
    """Extract headers, body text, HTML tags, URLs and part descriptions from a message."""
    limits = limits or ExtractLimits()
    if isinstance(raw, Message):
        try:
            raw = raw.as_bytes(policy=compat32)
        except Exception:
            raw = str(raw).encode("utf-8", "surrogateescape")
    raw = strip_mbox_from(raw)
    result = MessageText(truncated=len(raw) > limits.max_message_bytes)
    raw = raw[: limits.max_message_bytes]
    section, _ = split_header_section(raw)
    result.headers = parse_headers(section, limits.max_header_bytes)
    try:
        msg = email.message_from_bytes(raw, policy=compat32)
    except Exception:
        return result
    texts: list[str] = []
    urls: list[str] = []
    html_sources: list[str] = []
    try:
        for count, part in enumerate(msg.walk()):
            if count >= limits.max_parts:
                result.truncated = True
                break
            _read_part(part, limits, result, texts, urls, html_sources)
    except Exception:  # a pathological structure: keep what we have
        result.defects += 1
    result.body_text = "\n".join(texts)
    result.html_source = "\n".join(html_sources)
    for text in texts:
        urls.extend(m.group(0) for m in _URL_IN_TEXT.finditer(text))
    result.urls = urls[: limits.max_urls]
    return result


def _read_part(
    part: Message,
    limits: ExtractLimits,
    result: MessageText,
    texts: list[str],
    urls: list[str],
    html_sources: list[str],
) -> None:
    result.defects += len(getattr(part, "defects", ()) or ())
    if part.is_multipart():
        return
    info = _part_info(part)
    result.parts.append(info)
    if info.content_type not in ("text/plain", "text/html"):
        return
    if info.disposition == "attachment" and info.content_type != "text/plain":
        return
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if not isinstance(payload, bytes):
        return
    if len(payload) > limits.max_part_bytes:
        result.truncated = True
        payload = payload[: limits.max_part_bytes]
    text = decode_bytes(payload, info.charset)
    if info.content_type == "text/html" or _LOOKS_HTML.search(text[:4096]):
        converted = html_to_text(text)
        html_sources.append(text)
        result.has_html = True
        result.html_tags.extend(converted.tags)
        urls.extend(converted.urls)
        if converted.title:
            texts.append(converted.title)
        texts.append(converted.text)
    else:
        result.has_plain = True
        texts.append(text)


def _part_info(part: Message) -> PartInfo:
    def safe(getter, default: str = "") -> str:  # type: ignore[no-untyped-def]
        try:
            value = getter()
        except Exception:
            return default
        return default if value is None else decode_header_value(value)

    return PartInfo(
        content_type=safe(part.get_content_type, "text/plain").lower()[:100],
        charset=safe(lambda: part.get_param("charset")).lower()[:40],
        encoding=safe(lambda: part.get("content-transfer-encoding")).lower()[:40],
        filename=safe(part.get_filename)[:200],
        disposition=safe(part.get_content_disposition).lower()[:40],
    )

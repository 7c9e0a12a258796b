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

import binascii
import email
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.message import Message
from email.policy import compat32

from decoders.mimeutil import Entity
from scanner.headerfields import blank_line
from scanner.ml.charsets import decode_bytes, decode_header_value
from scanner.ml.html_text import html_to_text

_HEADER_LINE = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$")
_URL_IN_TEXT = re.compile(r"""(?i)\b(?:(?:https?|ftp)://|www\.)[^\s<>"'()\[\]{}]{2,}""")
_CTYPE = re.compile(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+)")
_PARAM = re.compile(r"""([A-Za-z0-9_*-]+)\s*=\s*("[^"]*"|[^\s;]+)""")
_LOOKS_HTML = re.compile(r"(?i)<\s*(?:html|body|table|font|a\s+href|div|p)\b")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


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
    first, end = blank_line(raw)  # what \r?\n\r?\n finds first
    if first < 0:
        return raw, b""
    start = first - 1 if first > 0 and raw[first - 1] == 13 else first
    return raw[:start], raw[end:]


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
        data = bytes(value).strip()
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            text = decode_bytes(data, "utf-8")
        out.append((name, decode_header_value(text)))
    return out


def message_text(raw: bytes | Message, limits: ExtractLimits | None = None) -> MessageText:
    """Extract headers, body text, HTML tags, URLs and part descriptions from a message.

    A message that is not multipart is decoded directly (its headers are already
    parsed); only MIME trees go through :mod:`email`'s parser, which costs more.
    """
    limits = limits or ExtractLimits()
    if isinstance(raw, Message):
        try:
            raw = raw.as_bytes(policy=compat32)
        except Exception:
            raw = str(raw).encode("utf-8", "surrogateescape")
    raw = strip_mbox_from(raw)
    result = MessageText(truncated=len(raw) > limits.max_message_bytes)
    raw = raw[: limits.max_message_bytes]
    section, body = split_header_section(raw)
    result.headers = parse_headers(section, limits.max_header_bytes)
    texts: list[str] = []
    urls: list[str] = []
    info = _single_part_info(result)
    if info is not None:
        result.parts.append(info)
        _add_text(info, lambda: decode_transfer(body, info.encoding), limits, result, texts,
                  urls)
    else:
        _walk_mime(raw, limits, result, texts, urls)
    result.body_text = "\n".join(texts)
    for text in texts:
        if "://" in text or "www." in text or "WWW." in text:
            urls.extend(m.group(0) for m in _URL_IN_TEXT.finditer(text))
    result.urls = urls[: limits.max_urls]
    return result


def _walk_mime(raw: bytes, limits: ExtractLimits, result: MessageText, texts: list[str],
               urls: list[str]) -> None:
    try:
        msg = email.message_from_bytes(raw, _class=Entity, policy=compat32)
        for count, part in enumerate(msg.walk()):
            if count >= limits.max_parts:
                result.truncated = True
                break
            result.defects += len(getattr(part, "defects", ()) or ())
            if part.is_multipart():
                continue
            info = _part_info(part)
            if info.content_type.startswith("multipart/"):
                # no delimiter line split it: mail clients show the body as plain text,
                # and so do the decoders (decoders.mime's unsplit-multipart)
                info = replace(info, content_type="text/plain")
            result.parts.append(info)
            _add_text(info, lambda p=part: p.get_payload(decode=True), limits, result, texts,
                      urls)
    except Exception:  # a pathological structure: keep what we have
        result.defects += 1


def _single_part_info(result: MessageText) -> PartInfo | None:
    """The part description of a message that is not multipart, else ``None``."""
    value = result.header("content-type")
    match = _CTYPE.match(value)
    ctype = match.group(1).lower() if match else "text/plain"
    if ctype.startswith(("multipart/", "message/")):
        return None
    params = dict((k.lower(), v.strip('"')) for k, v in _PARAM.findall(value))
    disposition_value = result.header("content-disposition")
    disposition = disposition_value.split(";", 1)[0].strip().lower()
    disp_params = dict((k.lower(), v.strip('"')) for k, v in _PARAM.findall(disposition_value))
    return PartInfo(
        content_type=ctype[:100],
        charset=params.get("charset", "").lower()[:40],
        encoding=result.header("content-transfer-encoding").strip().lower()[:40],
        filename=(disp_params.get("filename") or params.get("name") or "")[:200],
        disposition=disposition[:40],
    )


def decode_transfer(body: bytes, encoding: str) -> bytes:
    """Undo a Content-Transfer-Encoding leniently (bad base64 keeps what decodes)."""
    if encoding == "base64":
        data = _NOT_BASE64.sub(b"", body)
        rest = len(data) % 4
        data = data[:-1] if rest == 1 else data + b"=" * ((4 - rest) % 4)
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            return body
    if encoding == "quoted-printable":
        try:
            return binascii.a2b_qp(body)
        except binascii.Error:
            return body
    return body


def _add_text(
    info: PartInfo,
    payload_of: Callable[[], object],
    limits: ExtractLimits,
    result: MessageText,
    texts: list[str],
    urls: list[str],
) -> None:
    if info.content_type not in ("text/plain", "text/html"):
        return
    if info.disposition == "attachment" and info.content_type != "text/plain":
        return
    try:
        payload = payload_of()
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

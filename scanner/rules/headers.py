"""Header fields as SpamAssassin's ``header`` rules see them.

The header section is split the way SpamAssassin does it: a line starting with space
or tab continues the previous field; the name ends at the first colon (white space
before the colon is dropped); a line without a colon is skipped. Values are kept raw
(folding and leading space included) and decoded: unfolded, trimmed, raw 8-bit
octets that are not UTF-8 read as Windows-1252 (as SpamAssassin 4 does), RFC 2047
encoded-words decoded to UTF-8 octets (except in ``Received``, ``Message-ID``,
``Date``, ``References`` and similar fields), with a newline appended. Names and
values are capped at 256 and 8,192 bytes, as SpamAssassin does, so a 1 MB header line
costs no more than an 8 KB one.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from dataclasses import dataclass, field

from decoders.mimeutil import with_byte_order
from scanner.headerfields import blank_line
from scanner.rules.charsets import encoded_word_charset, header_utf8

MAX_NAME = 256
MAX_VALUE = 8192
MAX_ALL = 65536
_NO_DECODE = re.compile(r"^(?:Received|(?:Resent-)?(?:Message-ID|Date)|MIME-Version|References|"
                        r"In-Reply-To|List-.*)$", re.I)
_EW_GAP = re.compile(rb"(=\?[A-Za-z0-9*_-]+\?[bqBQ]\?[^?]*\?=)\s+"
                     rb"(?==\?[A-Za-z0-9*_-]+\?[bqBQ]\?[^?]*\?=)")
_EW = re.compile(rb"=\?([A-Za-z0-9*_-]+)\?([bqBQ])\?([^?]*)\?=")
_FOLD = re.compile(rb"\n[ \t]+")
_NEWLINE = re.compile(rb"\r?\n")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|\xc2[\x80-\x9f]")  # in UTF-8


@dataclass(slots=True)
class HeaderBlock:
    """One header section: fields in order, by lower-case name."""

    order: list[tuple[str, bytes]] = field(default_factory=list)
    """(name as written, raw value) in order."""
    pristine: bytes = b""
    truncated: bool = False
    _index: dict[str, list[bytes]] = field(default_factory=dict, repr=False, compare=False)
    _indexed: int = field(default=0, repr=False, compare=False)
    _decoded: dict[str, list[bytes]] = field(default_factory=dict, repr=False, compare=False)

    def raw(self, name: str) -> list[bytes]:
        """Raw values of every field called ``name`` (any case), in order."""
        if self._indexed != len(self.order):  # built lazily, again if fields were added
            self._index = {}
            for n, v in self.order:
                self._index.setdefault(n.lower(), []).append(v)
            self._indexed = len(self.order)
            self._decoded.clear()
        return list(self._index.get(name.lower(), ()))

    def decoded(self, name: str) -> list[bytes]:
        """Decoded values (encoded words, charsets) of every field called ``name``."""
        values = self.raw(name)
        key = name.lower()
        cached = self._decoded.get(key)
        if cached is None:
            cached = self._decoded[key] = [decode_value(v, name) + b"\n" for v in values]
        return list(cached)

    def all_decoded(self) -> list[bytes]:
        out: list[bytes] = []
        size = 0
        for name, value in self.order:
            line = name.encode("latin-1") + b": " + decode_value(value, name) + b"\n"
            size += len(line)
            if size > MAX_ALL:
                break
            out.append(line)
        return out


def header_part(raw: bytes) -> bytes:
    """``split_header(raw)[0]`` without converting (copying) the body: the header views
    need only this, and the body of a 20 MB message was two 20 MB copies."""
    start = 0
    if raw.startswith(b"From ") and not raw.startswith(b"From:"):
        start = raw.find(b"\n") + 1
        if start == 0:
            return b""
    if raw.startswith((b"\n", b"\r\n"), start):
        return b"\n"
    end, _ = blank_line(raw, start)  # "\n\n" once CR LF is LF
    if end < 0:
        return raw[start:].replace(b"\r\n", b"\n")
    return raw[start:end + 1].replace(b"\r\n", b"\n") + b"\n"


def split_header(raw: bytes) -> tuple[bytes, bytes]:
    """(header section incl. the blank line, body), line ends as LF."""
    text = raw.replace(b"\r\n", b"\n")
    if text.startswith(b"From ") and not text.startswith(b"From:"):
        text = text.split(b"\n", 1)[1] if b"\n" in text else b""
    if text.startswith(b"\n"):
        return b"\n", text[1:]
    head, sep, body = text.partition(b"\n\n")
    if not sep:
        return text, b""
    return head + b"\n\n", body


def parse_block(head: bytes) -> HeaderBlock:
    """Fields of a header section (LF line ends)."""
    block = HeaderBlock(pristine=head)
    current: list[bytes] | None = None
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current.append(b"\n" + line)
            continue
        if current is not None:
            _add(block, current)
            current = None
        if not line:
            break
        if line.startswith(b"--"):
            break
        current = [line]
    if current is not None:
        _add(block, current)
    return block


def _add(block: HeaderBlock, pieces: list[bytes]) -> None:
    field_bytes = b"".join(pieces)
    name, colon, value = field_bytes.partition(b":")
    if not colon:
        return
    name = name.rstrip(b" \t")
    if len(name) > MAX_NAME:
        name = name[:MAX_NAME]
        block.truncated = True
    if len(value) > MAX_VALUE:
        value = value[:MAX_VALUE]
        block.truncated = True
    block.order.append((name.decode("latin-1"), value + b"\n"))


def unfold(value: bytes) -> bytes:
    return _FOLD.sub(b" ", value).strip()


def decode_value(raw: bytes, name: str, visible_only: bool = False) -> bytes:
    """SpamAssassin's decoded form of a raw value (without the final newline). With
    ``visible_only`` an encoded word that decodes to control characters (C0 but TAB,
    DEL, C1) stays as it was written, as RFC 2047 section 6.2 lets a reader show a
    word it will not decode: text written anew from the result (a tagged Subject)
    must not carry control characters that were hidden inside an encoded word."""
    value = unfold(raw)
    value = header_utf8(_NEWLINE.sub(b"", value))
    if _NO_DECODE.match(name) or b"=?" not in value:
        return value
    value = _EW_GAP.sub(rb"\1", value)
    return _EW.sub(_visible_word if visible_only else _decode_word, value)


def _visible_word(m: re.Match) -> bytes:
    """:func:`_decode_word`, or the word as written when its text has control
    characters."""
    decoded = _decode_word(m)
    return m.group(0) if _CONTROL.search(decoded) else decoded


def _decode_word(m: re.Match) -> bytes:
    charset = m.group(1).decode("ascii").split("*", 1)[0]
    data = m.group(3)
    try:
        if m.group(2) in (b"B", b"b"):
            octets = base64.b64decode(data + b"=" * (-len(data) % 4))
        else:
            octets = quopri.decodestring(data.replace(b"_", b" "), header=True)
    except (binascii.Error, ValueError):
        return m.group(0)
    return to_utf8(octets, charset)


def to_utf8(octets: bytes, charset: str) -> bytes:
    """Octets in ``charset`` as UTF-8, as SpamAssassin decodes an encoded word: by the
    declared charset only (ISO-8859-1 as Windows-1252, a BOM-less UTF-16 in the byte
    order :func:`decoders.mimeutil.with_byte_order` picks); 8-bit octets in a charset
    no codec knows as Windows-1252. Deliberately unlike SpamAssassin 4.0.1, whose
    ``_normalize`` hands back a UTF-16 word's octets undecoded (NULs and all) when it is
    asked for UTF-8 octets: here the word is decoded."""
    try:
        codec = with_byte_order(encoded_word_charset(charset), octets)
        return octets.decode(codec, "replace").encode("utf-8")
    except (UnicodeError, LookupError):
        return octets.decode("cp1252", "replace").encode("utf-8")


def name_of(phrase: str) -> bytes:
    """A display name as ``:name`` returns it: decoded, white space normalised; one of
    white space only stays as it is (line ends dropped), as SpamAssassin keeps it."""
    if not phrase.strip(" \t\n\r\f\v"):
        return _NEWLINE.sub(b"", phrase.encode("latin-1"))
    decoded = decode_value(phrase.encode("latin-1"), "From")
    if decoded.strip():
        decoded = b" ".join(decoded.split())
        m = re.fullmatch(rb"'(.*?)'", decoded)
        if m:
            decoded = m.group(1)
    return decoded

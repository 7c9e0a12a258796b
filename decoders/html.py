"""HTML: a decoder for embedded ``data:`` URIs and smuggled script payloads.

``HtmlDecoder`` yields the payloads of base64 ``data:`` URIs (a common way to smuggle an
executable inside an HTML attachment) as child parts. It also undoes *HTML smuggling*:
a page whose script turns a large base64 or hex string literal (or several joined with
``+`` or listed in an array) into a file (``atob``,
``Uint8Array``, ``new Blob``, ``createObjectURL``, ``msSaveOrOpenBlob``, a ``download``
attribute) gets each such literal of at least :data:`SMUGGLED_FLOOR` decoded bytes that
decodes cleanly (strict base64 or even-length hex) as a child flagged ``html-smuggled``,
named after the page's ``download`` name when it gives one, so the banned-file rules and
ClamAV see the zip, iso or exe the browser would save. The visible text of HTML leaves
(``Part.text``) comes from :mod:`decoders.html_text`.
"""

from __future__ import annotations

import binascii
import re
import urllib.parse
from collections.abc import Iterator

from decoders.base import Child
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name, decode_base64
from decoders.part import Part

_DATA_URI = re.compile(
    rb"data:([\w.+/-]*)((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,([A-Za-z0-9+/=%\s]+)", re.I
)
SMUGGLED_FLOOR = 1024
"""Fewest decoded bytes a script literal must give to be taken as a smuggled file
(an inline icon or a font is smaller, and comes as a ``data:`` URI anyway)."""
LITERAL_CHARS = SMUGGLED_FLOOR * 4 // 3
# a string literal of base64 (or hex: its digits are base64 characters too); a payload
# may be one literal or several joined with "+" or listed in an array (one match: the
# content cannot hold a quote, so no literal is tried more than once)
_LITERAL = rb"[\"'`]([A-Za-z0-9+/\s]+={0,2})[\"'`]"
_CHUNK = re.compile(_LITERAL)
_JOINED = re.compile(rb"(?:%s\s*[+,]\s*)*%s" % (_LITERAL.replace(b"(", b"(?:", 1), _LITERAL))
_B64_RUN = re.compile(rb"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{32}")  # a chunk's worth
_HEX = re.compile(rb"(?:[0-9A-Fa-f]{2})+")
# the script calls that turn a string into a file: a word each (found with bytes.find in
# the lowered page; a regex alternation with IGNORECASE tried every position of every HTML
# part: 0.74 ms for a 16 KB page) and, where the word alone says too little, the context
# it needs around it
_SMUGGLING_API = (
    (b"atob", re.compile(rb"\batob\s*\(")),
    (b"uint8array", None),
    (b"blob", re.compile(rb"new\s+blob\b")),
    (b"createobjecturl", None),
    (b"mssave", re.compile(rb"mssave(?:oropen)?blob")),
    (b"download", re.compile(rb"\bdownload\s*=|\.download\b")),
)
_DOWNLOAD_NAME = re.compile(
    rb"""(?:\bdownload\s*=\s*|msSave(?:OrOpen)?Blob\s*\([^;]{0,200}?,\s*)(["'])([^"'<>\r\n]{1,255})\1""",
    re.I)
_SPACE = re.compile(rb"\s+")


def literals(raw: bytes, ctx: DecodeContext) -> Iterator[bytes]:
    """The text of each base64/hex string literal of ``raw`` at least
    :data:`LITERAL_CHARS` long, literals joined by ``+`` or ``,`` taken as one."""
    for n, m in enumerate(_JOINED.finditer(raw)):
        if n % 4096 == 0:
            ctx.check_time()
        if m.end() - m.start() < LITERAL_CHARS:
            continue
        text = b"".join(c.group(1) for c in _CHUNK.finditer(raw, m.start(), m.end()))
        if len(text) >= LITERAL_CHARS:
            yield text


def smuggling(raw: bytes) -> bool:
    """True when a script in ``raw`` may turn a string literal into a file and a run of
    base64 characters is there (the quick test; :func:`literals` finds the payloads)."""
    return _uses_file_api(raw.lower()) and _B64_RUN.search(raw) is not None


def _uses_file_api(low: bytes) -> bool:
    for word, context in _SMUGGLING_API:
        at = low.find(word)
        while at >= 0:
            if context is None or context.search(low, max(0, at - 32),
                                                  at + len(word) + 32):
                return True
            at = low.find(word, at + 1)
    return False


def _decoded_literal(literal: bytes) -> bytes | None:
    """The literal's bytes if it decodes cleanly and is large enough, else None."""
    text = _SPACE.sub(b"", literal)
    try:
        if _HEX.fullmatch(text):
            data = binascii.unhexlify(text)
        else:
            data = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    return data if len(data) >= SMUGGLED_FLOOR else None


def _download_names(raw: bytes) -> list[str]:
    """The names the page offers its downloads under (``download="x.zip"``,
    ``a.download = 'x.iso'``, ``msSaveOrOpenBlob(blob, "x.exe")``), first first."""
    names: list[str] = []
    for m in _DOWNLOAD_NAME.finditer(raw):
        name = clean_name(m.group(2).decode("utf-8", "replace"))
        if name and name not in names:
            names.append(name)
    return names


class HtmlDecoder:
    """Extracts base64 ``data:`` URI payloads and smuggled script payloads from HTML parts."""

    name = "html"
    handles = frozenset({"html"})
    order = 50

    def wants(self, part: Part) -> bool:
        raw = part.data()
        return _DATA_URI.search(raw) is not None or smuggling(raw)

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        raw = part.data()
        for n, m in enumerate(_DATA_URI.finditer(raw), 1):
            ctx.check_time()
            payload = m.group(4)
            if m.group(3):
                data = decode_base64(urllib.parse.unquote_to_bytes(payload))
            else:
                data = urllib.parse.unquote_to_bytes(payload)
            if len(data) < 16:
                continue
            mime = m.group(1).decode("ascii", "replace").lower() or None
            yield Child(blob=ctx.blob(data), name=f"data-uri-{n}", declared_type=mime)
        if smuggling(raw):
            yield from self._smuggled(raw, ctx)

    @staticmethod
    def _smuggled(raw: bytes, ctx: DecodeContext) -> Iterator[Child]:
        names = _download_names(raw)
        n = 0
        for literal in literals(raw, ctx):
            ctx.check_time()
            data = _decoded_literal(literal)
            if data is None:
                continue
            n += 1
            name = names[0] if names else f"smuggled-{n}"
            yield Child(blob=ctx.blob(data), name=name, aliases=tuple(names[1:]),
                        flags={"html-smuggled"})

"""PDF: risk flags from a keyword scan, and embedded files as child parts.

Our own small scanner (in the spirit of pdfid): names are normalised (``#xx`` escapes
decoded, so ``/J#61vaScript`` counts), compressed object streams are inflated and
scanned too. Flags: ``pdf_javascript`` (/JavaScript, /JS), ``pdf_openaction``
(/OpenAction, /AA), ``pdf_launch`` (/Launch), ``pdf_embedded`` (/EmbeddedFile(s)),
``pdf_encrypted`` (/Encrypt). Streams of type /EmbeddedFile are yielded (Flate and
ASCIIHex filters undone) under the name their file specification gives.
"""

from __future__ import annotations

import binascii
import re
import zlib
from collections.abc import Iterator

from decoders.base import Child, LimitExceeded
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name
from decoders.part import Part

_NAME = re.compile(rb"/[^\s/<>\[\]()%{}]+")
_HEX = re.compile(rb"#([0-9A-Fa-f]{2})")
_OBJ = re.compile(rb"(\d+)\s+\d+\s+obj\b")
_STREAM = re.compile(rb"stream\r?\n")
_EF_REF = re.compile(rb"/EF\s*<<[^>]*?/(?:UF|F)\s+(\d+)\s+\d+\s+R", re.S)
_FNAME = re.compile(rb"/(?:UF|F)\s*\(((?:\\.|[^\\)])*)\)", re.S)
_LENGTH = re.compile(rb"/Length\s+(\d+)(?!\s+\d+\s+R)")
FLAGS = {
    b"/JavaScript": "pdf_javascript",
    b"/JS": "pdf_javascript",
    b"/OpenAction": "pdf_openaction",
    b"/AA": "pdf_openaction",
    b"/Launch": "pdf_launch",
    b"/EmbeddedFile": "pdf_embedded",
    b"/EmbeddedFiles": "pdf_embedded",
    b"/Encrypt": "pdf_encrypted",
}
MAX_OBJSTM = 16 * 1024 * 1024


def _norm(name: bytes) -> bytes:
    return _HEX.sub(lambda m: bytes([int(m.group(1), 16)]), name) if b"#" in name else name


def names(data: bytes) -> set[bytes]:
    return {_norm(m.group(0)) for m in _NAME.finditer(data)}


def _objects(data: bytes) -> Iterator[tuple[int, bytes, bytes | None]]:
    """(object number, dictionary text, raw stream or None) for each ``N G obj``."""
    starts = list(_OBJ.finditer(data))
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(data)
        body = data[m.end() : end]
        s = _STREAM.search(body)
        if s is None:
            yield int(m.group(1)), body, None
            continue
        head = body[: s.start()]
        stop = body.find(b"endstream", s.end())
        length = _LENGTH.search(head)
        if length and s.end() + int(length.group(1)) <= len(body):
            raw = body[s.end() : s.end() + int(length.group(1))]
        else:
            raw = body[s.end() : stop if stop >= 0 else len(body)]
        yield int(m.group(1)), head, raw


def _unfilter(head: bytes, raw: bytes, limit: int) -> bytes:
    keys = names(head)
    if b"/FlateDecode" in keys or b"/Fl" in keys:
        try:
            out = zlib.decompressobj().decompress(raw, limit + 1)
        except zlib.error:
            return raw
        if len(out) > limit:
            raise LimitExceeded("quota", "pdf stream")
        return out
    if b"/ASCIIHexDecode" in keys or b"/AHx" in keys:
        hexdigits = re.sub(rb"[^0-9A-Fa-f]", b"", raw.split(b">")[0])
        return binascii.unhexlify(hexdigits[: len(hexdigits) // 2 * 2])
    return raw


def _literal(text: bytes) -> str:
    text = re.sub(rb"\\([()\\])", rb"\1", text)
    if text.startswith(b"\xfe\xff"):
        return text[2:].decode("utf-16-be", "replace")
    return text.decode("latin-1")


class PdfDecoder:
    """Flags risky PDF features and extracts embedded files."""

    name = "pdf"
    handles = frozenset({"pdf"})
    order = 50

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        data = part.data()
        found = names(data)
        filenames: dict[int, str] = {}
        embedded: list[tuple[int, bytes, bytes]] = []
        for num, head, raw in _objects(data):
            ctx.check_time()
            for ref in _EF_REF.finditer(head):
                fname = _FNAME.search(head)
                if fname:
                    filenames[int(ref.group(1))] = _literal(fname.group(1))
            if raw is None:
                continue
            keys = names(head)
            if b"/ObjStm" in keys:
                found |= names(_unfilter(head, raw, min(MAX_OBJSTM, ctx.remaining)))
            elif b"/EmbeddedFile" in keys:
                embedded.append((num, head, raw))
        for key, flag in FLAGS.items():
            if key in found:
                part.flags.add(flag)
        for num, head, raw in embedded:
            content = _unfilter(head, raw, ctx.remaining)
            yield Child(blob=ctx.blob(content), name=clean_name(filenames.get(num)))

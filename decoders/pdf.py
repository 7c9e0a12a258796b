"""PDF: risk flags from a keyword scan, and embedded files as child parts.

Our own small scanner (in the spirit of pdfid): names are normalised (``#xx`` escapes
decoded, so ``/J#61vaScript`` counts), compressed object streams are inflated and
scanned too. Flags: ``pdf_javascript`` (/JavaScript, /JS), ``pdf_openaction``
(/OpenAction, /AA), ``pdf_launch`` (/Launch), ``pdf_embedded`` (/EmbeddedFile(s)),
``pdf_encrypted`` (/Encrypt). Streams of type /EmbeddedFile are yielded (their filter
chain undone in order: Flate, ASCIIHex, ASCII85, RunLength, LZW) under the name their
file specification gives.
"""

from __future__ import annotations

import base64
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
# a number starts after a non-digit and is taken whole: from inside a long run of digits
# (hex or decimal stream data) every start had retried every length (quadratic)
_OBJ = re.compile(rb"(?<!\d)(\d++)\s+\d++\s+obj\b")
_STREAM = re.compile(rb"stream\r?\n")
_EF_REF = re.compile(rb"/EF\s*<<[^>]*?/(?:UF|F)\s+(\d+)\s+\d+\s+R", re.S)
_EF_START = re.compile(rb"/EF\s*<<")
_FNAME = re.compile(rb"/(?:UF|F)\s*\(((?:\\.|[^\\)])*)\)", re.S)
_LENGTH = re.compile(rb"/Length\s+(\d+)(?!\s+\d+\s+R)")
_FILTER_KEY = re.compile(rb"/Filter\s*")
_FILTER_VALUE = re.compile(rb"\[[^\]]*\]|/[^\s/<>\[\]()%{}]+")
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
MAX_OBJSTM = 16 * 1024 * 1024  # all object streams of one PDF together, once inflated
MAX_FILTERS = 16  # a longer /Filter chain is not undone (real ones have one or two)


def _norm(name: bytes) -> bytes:
    return _HEX.sub(lambda m: bytes([int(m.group(1), 16)]), name) if b"#" in name else name


def ef_refs(head: bytes) -> Iterator[re.Match[bytes]]:
    """``_EF_REF.finditer(head)`` in linear time.

    The pattern's ``[^>]*?`` runs to the next ``>`` from every ``/EF <<``, so a head of
    ``/EF <<`` repeated without ``>`` cost quadratic time (66 KB: 1.9 s, 263 KB: 29 s).
    When no reference follows one ``/EF <<`` before the next ``>``, none follows any
    later one before it either, so the search goes on after that ``>``.
    """
    pos = 0
    while (start := _EF_START.search(head, pos)) is not None:
        m = _EF_REF.match(head, start.start())
        if m is not None:
            yield m
            pos = m.end()
            continue
        pos = head.find(b">", start.end())
        if pos < 0:
            return


def file_name(head: bytes) -> re.Match[bytes] | None:
    """``_FNAME.search(head)``, searched only up to the last ``)`` that ends a string.

    A ``/F (`` that no unescaped ``)`` follows ran to the end of the head, from each
    such start; the first match ends at or before that last ``)`` anyway."""
    end = head.rfind(b")")
    while end >= 0:
        run = end  # the backslashes just before this ")" (an odd number escapes it)
        while run > 0 and head[run - 1] == 0x5C:
            run -= 1
        if (end - run) % 2 == 0:
            return _FNAME.search(head, 0, end + 1)
        end = head.rfind(b")", 0, run)
    return None


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


def filters(head: bytes) -> list[bytes]:
    """The stream's /Filter names in the order they are undone (a name or an array)."""
    value = _filter_value(head)
    if value is None:
        return []
    return [_norm(n.group(0)) for n in _NAME.finditer(value)]


def _filter_value(head: bytes) -> bytes | None:
    """The first ``/Filter`` value: an array or a name. An array that no ``]`` follows
    is skipped at once (it ran to the end from every ``/Filter [``: quadratic)."""
    last_close = head.rfind(b"]")
    for key in _FILTER_KEY.finditer(head):
        start = key.end()
        if head[start : start + 1] == b"[" and start > last_close:
            continue
        m = _FILTER_VALUE.match(head, start)
        if m is not None:
            return m.group(0)
    return None


def _unfilter(head: bytes, raw: bytes, limit: int) -> bytes:
    """Undo the stream's filter chain; an unknown filter stops it (the rest stays as it
    is), and so does a chain of more than ``MAX_FILTERS`` (each step reads the whole
    stream: 4,000 ``/A85`` on one 40 KB stream cost 3.3 s)."""
    out = raw
    chain = filters(head)
    if len(chain) > MAX_FILTERS:
        return out
    for name in chain:
        undo = _FILTERS.get(name)
        if undo is None:
            return out
        out = undo(out, limit)
        if len(out) > limit:
            raise LimitExceeded("quota", "pdf stream")
    return out


def _flate(data: bytes, limit: int) -> bytes:
    d = zlib.decompressobj()
    try:
        return d.decompress(data, limit + 1)
    except zlib.error:
        return data


def _ascii_hex(data: bytes, limit: int) -> bytes:
    hexdigits = re.sub(rb"[^0-9A-Fa-f]", b"", data.split(b">")[0])
    if len(hexdigits) % 2:
        hexdigits += b"0"  # PDF: a missing last digit is 0
    return binascii.unhexlify(hexdigits)


def _ascii85(data: bytes, limit: int) -> bytes:
    text = re.sub(rb"\s", b"", data)
    text = text.removeprefix(b"<~").split(b"~>")[0]
    try:
        return base64.a85decode(text)
    except ValueError:
        return data


def _run_length(data: bytes, limit: int) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data) and len(out) <= limit:
        n = data[i]
        if n == 128:
            break
        if n < 128:
            out += data[i + 1 : i + 2 + n]
            i += n + 2
        else:
            out += data[i + 1 : i + 2] * (257 - n)
            i += 2
    return bytes(out)


def _lzw(data: bytes, limit: int) -> bytes:
    """LZWDecode with early change (PDF's default): 9- to 12-bit codes, 256 clear, 257 end."""
    out = bytearray()
    table: list[bytes] = [bytes([i]) for i in range(256)] + [b"", b""]
    width, prev, bits, nbits = 9, b"", 0, 0
    for byte in data:
        bits, nbits = (bits << 8) | byte, nbits + 8
        while nbits >= width:
            nbits -= width
            code = (bits >> nbits) & ((1 << width) - 1)
            bits &= (1 << nbits) - 1  # keep only the bits not used yet
            if code == 256:
                table, width, prev = table[:258], 9, b""
                continue
            if code == 257 or len(out) > limit:
                return bytes(out)
            if code < len(table):
                entry = table[code]
            elif code == len(table) and prev:
                entry = prev + prev[:1]
            else:
                return bytes(out)  # a code that cannot be there: damaged stream
            out += entry
            if prev and len(table) < 4096:  # a full table stays as it is until a clear
                table.append(prev + entry[:1])
            prev = entry
            if len(table) + 1 >= 1 << width and width < 12:
                width += 1
    return bytes(out)


_FILTERS = {
    b"/FlateDecode": _flate, b"/Fl": _flate,
    b"/ASCIIHexDecode": _ascii_hex, b"/AHx": _ascii_hex,
    b"/ASCII85Decode": _ascii85, b"/A85": _ascii85,
    b"/RunLengthDecode": _run_length, b"/RL": _run_length,
    b"/LZWDecode": _lzw, b"/LZW": _lzw,
}


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
        objstm_budget = MAX_OBJSTM
        for num, head, raw in _objects(data):
            ctx.check_time()
            refs = list(ef_refs(head))
            fname = file_name(head) if refs else None
            for ref in refs:
                if fname:
                    filenames[int(ref.group(1))] = _literal(fname.group(1))
            if raw is None:
                continue
            keys = names(head)
            if b"/ObjStm" in keys:
                objstm_budget = self._objstm_names(head, raw, found, objstm_budget, ctx)
            elif b"/EmbeddedFile" in keys:
                embedded.append((num, head, raw))
        for key, flag in FLAGS.items():
            if key in found:
                part.flags.add(flag)
        for num, head, raw in embedded:
            content = _unfilter(head, raw, ctx.remaining)
            yield Child(blob=ctx.blob(content), name=clean_name(filenames.get(num)))

    @staticmethod
    def _objstm_names(head: bytes, raw: bytes, found: set[bytes], budget: int,
                      ctx: DecodeContext) -> int:
        """Add the names inside one object stream to ``found``; the budget left.

        Every object stream of the PDF shares ``MAX_OBJSTM`` inflated bytes: each one
        alone used to get the whole of it, so a 66 KB PDF of small doubly deflated
        streams inflated gigabytes (8.6 s). Past the budget the quota limit is hit."""
        content = _unfilter(head, raw, min(budget, ctx.remaining))
        found |= names(content)
        return budget if content is raw else budget - len(content)  # raw: input, not inflated

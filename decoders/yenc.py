"""yEnc: finds ``=ybegin`` ... ``=yend`` blocks in text and decodes them.

yEnc is Usenet's 8-bit attachment encoding; Thunderbird's mail reader shows a yEnc
block inside a plain text body as an attachment (as it does with uuencode and BinHex),
so a file sent that way must reach the checks too. Each byte is stored plus 42
(mod 256), with ``=`` escaping a byte stored plus 64 more. Multi-part posts
(``=ypart``) yield each part on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from decoders.base import Child
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name
from decoders.part import Part

_BEGIN = re.compile(rb"^=ybegin ([^\r\n]*)\r?$", re.M)
_PART = re.compile(rb"=ypart [^\r\n]*\r?\n")  # matched at the data start
_END = re.compile(rb"^=yend\b", re.M)
_NAME = re.compile(rb"\bname=(.*)$")
_TABLE = bytes((i - 42) % 256 for i in range(256))
MAX_SCAN = 32 * 1024 * 1024


def decode_block(data: bytes) -> bytes:
    """The bytes of one block's data lines (line ends dropped, escapes undone)."""
    data = data.replace(b"\r", b"").replace(b"\n", b"")
    pieces = data.split(b"=")
    out = [pieces[0]]
    for piece in pieces[1:]:
        if piece:
            out.append(bytes([(piece[0] - 64) % 256]) + piece[1:])
    return b"".join(out).translate(_TABLE)


def iter_blocks(text: bytes) -> Iterator[tuple[str | None, bytes]]:
    """(file name, encoded data) for every ``=ybegin`` block; an unterminated block
    runs to the end of the text."""
    pos = 0
    while True:
        m = _BEGIN.search(text, pos)
        if m is None:
            return
        name = _NAME.search(m.group(1))
        start = m.end() + 1
        part = _PART.match(text, start)
        if part is not None:
            start = part.end()
        end = _END.search(text, start)
        stop = end.start() if end else len(text)
        yield (clean_name(name.group(1).decode("utf-8", "replace")) if name else None,
               text[start:stop])
        pos = stop + 1 if end else len(text)


class YencDecoder:
    """Extracts yEnc-encoded files from text parts."""

    name = "yenc"
    handles = frozenset({"asc", "dat"})
    order = 61

    def wants(self, part: Part) -> bool:
        if part.size > MAX_SCAN:
            return False
        data = part.data()
        # "in" first: re tries a pattern starting with "^" at every position
        return b"=ybegin " in data and _BEGIN.search(data) is not None

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        if part.size > MAX_SCAN:
            return
        for name, data in iter_blocks(part.data()):
            ctx.check_time()
            yield Child(blob=ctx.blob(decode_block(data)), name=name)

"""uuencode: finds ``begin <mode> <name>`` ... ``end`` blocks in text and decodes them.

Handles whole uuencoded files (type ``uue``) and uuencoded blocks embedded in plain
text bodies (type ``asc``), like MIME-tools' ``extract_uuencode``.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator

from decoders.base import Child
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name
from decoders.part import Part

_BEGIN = re.compile(rb"^begin(?:-base64)? [0-7]{3,4} ([^\r\n]+)\r?$", re.M)
_END = re.compile(rb"^end\r?$", re.M)
MAX_SCAN = 32 * 1024 * 1024


def _line(line: bytes) -> bytes:
    line = line.rstrip(b"\r\n")
    if not line:
        return b""
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        # some encoders drop trailing spaces or add garbage: trust the length byte
        n = (line[0] - 32) & 63
        if len(line) - 1 < (n * 4 + 2) // 3 - 2:
            return b""  # truncated or not a uuencoded line at all
        padded = line[: 1 + (n * 4 + 2) // 3].ljust(1 + (n * 4 + 2) // 3, b"`")
        try:
            return binascii.a2b_uu(padded)
        except binascii.Error:
            return b""


def iter_blocks(text: bytes) -> Iterator[tuple[str | None, bytes]]:
    """(file name, encoded lines) for every begin/end block."""
    pos = 0
    while True:
        m = _BEGIN.search(text, pos)
        if m is None:
            return
        end = _END.search(text, m.end())
        stop = end.start() if end else len(text)
        name = clean_name(m.group(1).decode("utf-8", "replace"))
        yield name, text[m.end() : stop]
        pos = end.end() if end else len(text)


def uudecode_all(text: bytes) -> list[tuple[str | None, bytes]]:
    """Decode every uuencoded block of ``text`` into memory (used for small MIME bodies)."""
    return [(name, b"".join(_lines(lines))) for name, lines in iter_blocks(text)]


def _lines(lines: bytes) -> Iterator[bytes]:
    """Decoded lines up to the zero-length line that ends the data."""
    for line in lines.splitlines():
        stripped = line.strip()
        if stripped in (b"`", b" ", b""):
            if stripped:
                return
            continue
        yield _line(line)


class UuDecoder:
    """Extracts uuencoded files from uuencoded and plain text parts."""

    name = "uue"
    handles = frozenset({"uue", "asc"})
    order = 60

    def wants(self, part: Part) -> bool:
        if part.size > MAX_SCAN:
            return False
        data = part.data()
        # "in" first: re tries a pattern starting with "^" at every position
        return b"begin" in data and _BEGIN.search(data) is not None

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        if part.size > MAX_SCAN:
            return
        text = part.data()
        for name, lines in iter_blocks(text):
            writer = ctx.writer()
            try:
                for decoded in _lines(lines):
                    writer.write(decoded)
            except BaseException:
                writer.discard()
                raise
            yield Child(blob=writer.finish(), name=name)

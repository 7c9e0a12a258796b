"""ARJ archives: stored (method 0), LZH-coded (methods 1-3) and method 4 members.

No maintained Python or libarchive reader exists, so this is our own. Garbled
(password-protected) members flag the part ``encrypted``; method 4 ("fastest") is
decoded too. Each member's CRC-32 is checked. An entry of another type (directory,
volume or chapter label) is skipped only when it stores nothing: data under any type
is decoded, as a member that an extractor might write out.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator

from decoders.base import Child, CorruptPart, LimitExceeded, Unsupported
from decoders.context import DecodeContext
from decoders.lzh import decode as lzh_decode
from decoders.lzh import decode_fastest
from decoders.mimeutil import clean_name
from decoders.part import Part

MAGIC = b"\x60\xea"
GARBLED = 0x01
MAX_PACKED = 64 * 1024 * 1024


def _header(data: bytes, pos: int) -> tuple[bytes, int] | None:
    """The basic header at ``pos`` and the offset after its extended headers (None at end)."""
    if data[pos : pos + 2] != MAGIC:
        raise CorruptPart("arj: header signature missing")
    if pos + 4 > len(data):
        raise CorruptPart("arj: truncated header")
    (size,) = struct.unpack_from("<H", data, pos + 2)
    if size == 0:
        return None
    if size > 2600 or pos + 8 + size > len(data):
        raise CorruptPart("arj: bad header size")
    header = data[pos + 4 : pos + 4 + size]
    (crc,) = struct.unpack_from("<I", data, pos + 4 + size)
    if zlib.crc32(header) != crc:
        raise CorruptPart("arj: header CRC mismatch")
    pos += 8 + size
    while True:  # extended headers: size, data, CRC
        if pos + 2 > len(data):
            raise CorruptPart("arj: truncated extended header")
        (ext,) = struct.unpack_from("<H", data, pos)
        pos += 2
        if ext == 0:
            return header, pos
        pos += ext + 4


class ArjDecoder:
    """Extracts the members of ARJ archives."""

    name = "arj"
    handles = frozenset({"arj"})
    order = 45

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        data = part.data()
        unsupported: list[str] = []
        found = _header(data, 0)  # the archive's main header
        while found is not None:
            found = _header(data, found[1])
            if found is None:
                break
            header, pos = found
            ctx.check_time()
            if len(header) < 30:
                raise CorruptPart("arj: file header too short")
            first = header[0]
            flags, method, ftype = header[4], header[5], header[6]
            packed, size, crc = struct.unpack_from("<III", header, 12)
            name = clean_name(header[first:].split(b"\0", 1)[0].decode("cp437"))
            body = data[pos : pos + packed]
            found = (header, pos + packed)
            if ftype not in (0, 1) and packed == 0:  # directories, labels, comments
                continue
            if len(body) < packed:
                raise CorruptPart(f"arj: {name}: data truncated")
            if flags & GARBLED:
                ctx.mark_encrypted(part, name)
                continue
            if method == 0:
                chunks = [body]
            elif method in (1, 2, 3, 4) and packed <= MAX_PACKED:
                chunks = []
                decoder = lzh_decode if method < 4 else decode_fastest
                decoder(body, size, _collector(chunks, ctx))
            else:
                unsupported.append(f"{name}: method {method}")
                continue
            blob = ctx.blob(b"".join(chunks))
            if zlib.crc32(blob.read()) != crc:
                raise CorruptPart(f"arj: {name}: CRC mismatch")
            yield Child(blob=blob, name=name)
        if unsupported:
            raise Unsupported("arj: " + "; ".join(unsupported)[:180])


def _collector(chunks: list[bytes], ctx: DecodeContext) -> Callable[[bytes], None]:
    """An output callback that keeps memory within the remaining quota and the deadline."""
    total = 0

    def emit(chunk: bytes) -> None:
        nonlocal total
        total += len(chunk)
        if total > ctx.remaining:
            raise LimitExceeded("quota", f"{ctx.quota} bytes")
        ctx.check_time()
        chunks.append(chunk)

    return emit

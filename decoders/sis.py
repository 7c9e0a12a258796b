"""Symbian installation files (SIS, EPOC releases 3 to 6): the installed files.

Our own reader of the classic (pre-Symbian 9) layout: a fixed header, then file records
(simple or one per language) pointing at zlib-compressed (unless the NOCOMPRESS option
is set) file bodies. Conditional and option records end the walk; what was read so far
is kept. Symbian 9 SIS files (a different container) stay leaves.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from decoders.base import Child, CorruptPart, LimitExceeded
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name
from decoders.part import Part

RELEASE6 = 0x10003A12
UNICODE, NOCOMPRESS = 0x0001, 0x0008
MAX_RECORDS = 512


def _u32(data: bytes, pos: int) -> int:
    if pos + 4 > len(data):
        raise CorruptPart("sis: truncated")
    return struct.unpack_from("<I", data, pos)[0]


def _name(data: bytes, length: int, ptr: int, unicode: bool) -> str | None:
    raw = data[ptr : ptr + length]
    text = raw.decode("utf-16-le", "replace") if unicode else raw.decode("latin-1")
    return clean_name(text.replace("\\", "/").split("/")[-1] or None)


class SisDecoder:
    """Extracts the files of classic Symbian SIS installers."""

    name = "sis"
    handles = frozenset({"sis"})
    order = 55

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        try:
            yield from self._files(part.data(), ctx)
        except struct.error as exc:
            raise CorruptPart(f"sis: {exc}") from exc

    def _files(self, data: bytes, ctx: DecodeContext) -> Iterator[Child]:
        if len(data) < 0x44:
            raise CorruptPart("sis: header truncated")
        release6 = _u32(data, 4) == RELEASE6
        langs, files = struct.unpack_from("<HH", data, 0x12)
        options = struct.unpack_from("<H", data, 0x24)[0]
        pos = _u32(data, 0x34)
        unicode = bool(options & UNICODE)
        for _ in range(min(files, MAX_RECORDS)):
            ctx.check_time()
            kind = _u32(data, pos)
            if kind not in (0, 1):  # options, if/elseif/else/endif: not walked
                return
            count = 1 if kind == 0 else max(1, langs)
            ftype = _u32(data, pos + 4)
            src_len, src_ptr, dst_len, dst_ptr = struct.unpack_from("<IIII", data, pos + 12)
            fields = pos + 28
            lengths = [_u32(data, fields + 4 * i) for i in range(count)]
            ptrs = [_u32(data, fields + 4 * (count + i)) for i in range(count)]
            pos = fields + 8 * count + (4 * count + 8 if release6 else 0)
            if ftype == 5:  # FileNull: nothing stored
                continue
            name = _name(data, dst_len, dst_ptr, unicode) or _name(data, src_len, src_ptr, unicode)
            for length, ptr in zip(lengths, ptrs, strict=True):
                body = data[ptr : ptr + length]
                if len(body) < length:
                    raise CorruptPart(f"sis: {name}: data truncated")
                yield Child(blob=ctx.blob(self._inflate(body, options, ctx)), name=name)

    @staticmethod
    def _inflate(body: bytes, options: int, ctx: DecodeContext) -> bytes:
        if options & NOCOMPRESS:
            return body
        try:
            out = zlib.decompressobj().decompress(body, ctx.remaining + 1)
        except zlib.error as exc:
            raise CorruptPart(f"sis: {exc}") from exc
        if len(out) > ctx.remaining:
            raise LimitExceeded("quota", f"{ctx.quota} bytes")
        return out

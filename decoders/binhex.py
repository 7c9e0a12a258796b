"""BinHex 4.0 (``.hqx``): 6-bit text decoding, run-length expansion, data and resource forks.

Python dropped its ``binhex`` module in 3.11, so this is a small reader of our own. The
run-length step can expand 255-fold, so the output goes through the counted writer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from decoders.base import Child, CorruptPart, LimitExceeded
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name
from decoders.part import Part

ALPHABET = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
MARKER = b"(This file must be converted with BinHex"
RLE = 0x90


def _sixbit(text: bytes) -> bytes:
    start = text.find(b":", text.find(MARKER) + 1 if MARKER in text else 0)
    if start < 0:
        raise CorruptPart("no BinHex data start")
    out = bytearray()
    acc = bits = 0
    for c in text[start + 1 :]:
        if c == 0x3A:  # closing colon
            break
        v = _VALUE.get(c)
        if v is None:
            continue
        acc = (acc << 6) | v
        bits += 6
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    return bytes(out)


def _unrle(data: bytes, ctx: DecodeContext) -> bytes:
    out = bytearray()
    prev = 0
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c == RLE and i + 1 < n:
            count = data[i + 1]
            i += 2
            if count == 0:
                out.append(RLE)
                prev = RLE
            else:
                if len(out) + count > ctx.remaining:
                    raise LimitExceeded("quota", f"{ctx.quota} bytes")
                out.extend(bytes([prev]) * (count - 1))
            continue
        out.append(c)
        prev = c
        i += 1
    return bytes(out)


class BinHexDecoder:
    """Decodes BinHex 4.0 files into their data and resource forks."""

    name = "binhex"
    handles = frozenset({"hqx"})
    order = 60

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        raw = _unrle(_sixbit(part.data()), ctx)
        if len(raw) < 22:
            raise CorruptPart("BinHex header truncated")
        nlen = raw[0]
        name = clean_name(raw[1 : 1 + nlen].decode("mac_roman", "replace"))
        pos = 1 + nlen + 1 + 4 + 4 + 2
        if len(raw) < pos + 10:
            raise CorruptPart("BinHex header truncated")
        dlen, rlen = struct.unpack(">II", raw[pos : pos + 8])
        pos += 8 + 2
        data = raw[pos : pos + dlen]
        if len(data) < dlen:
            raise CorruptPart("BinHex data fork truncated")
        yield Child(blob=ctx.blob(data), name=name)
        pos += dlen + 2
        rsrc = raw[pos : pos + rlen]
        if rsrc:
            yield Child(blob=ctx.blob(rsrc), name=f"{name or 'file'}.rsrc")

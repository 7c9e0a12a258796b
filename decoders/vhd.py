"""Microsoft VHD disks (fixed and dynamic) and the raw bytes of a part, as :class:`Disk`.

After Microsoft's "Virtual Hard Disk Image Format Specification" (version 1.0): every
VHD ends with a 512-byte footer ("conectix", big-endian fields; disks made before
Virtual PC 2004 have a 511-byte one). A fixed disk is the raw disk followed by the
footer. A dynamic disk starts with a copy of the footer; the footer's data offset
points at the dynamic disk header ("cxsparse"), which gives the block allocation table
(BAT: one big-endian sector number per block, 0xFFFFFFFF for a block never written) and
the block size. Each allocated block is a sector bitmap (one bit per sector, most
significant bit first) followed by the block's data; an unallocated block, or a sector
whose bitmap bit is clear, reads as zeros. Differencing disks (type 4) need their
parent and are not read. Nothing is materialised: a 2 TB sparse disk costs the reads
of the sectors actually looked at.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import BinaryIO

from decoders.base import CorruptPart, Unsupported

COOKIE = b"conectix"
SPARSE_COOKIE = b"cxsparse"
FIXED, DYNAMIC, DIFFERENCING = 2, 3, 4
UNALLOCATED = 0xFFFFFFFF
SECTOR = 512


class StreamDisk:
    """``size`` bytes of a seekable stream (the part's bytes, or its first ``size``)."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream, self.size = stream, size

    def read(self, offset: int, n: int) -> bytes:
        if offset < 0 or offset + n > self.size:
            raise CorruptPart(f"read at {offset} past the end ({self.size} bytes)")
        self.stream.seek(offset)
        data = self.stream.read(n)
        if len(data) != n:
            raise CorruptPart(f"read at {offset}: the image is truncated")
        return data


def read_footer(stream: BinaryIO, size: int) -> bytes | None:
    """The VHD footer at the end of ``size`` bytes, or None."""
    if size < 511:
        return None
    stream.seek(max(0, size - 512))
    tail = stream.read(512)
    if tail.startswith(COOKIE):
        return tail
    if tail[1:].startswith(COOKIE):  # a 511-byte footer
        return tail[1:] + b"\0"
    return None


class DynamicDisk:
    """The virtual disk of a dynamic VHD, read block by block through its BAT."""

    def __init__(self, stream: BinaryIO, file_size: int, footer: bytes) -> None:
        self.stream, self.file_size = stream, file_size
        header_at = struct.unpack_from(">Q", footer, 16)[0]
        self.size = struct.unpack_from(">Q", footer, 48)[0]
        header = self._raw(header_at, 1024)
        if not header.startswith(SPARSE_COOKIE):
            raise CorruptPart("vhd: no dynamic disk header where the footer says")
        self.bat_at = struct.unpack_from(">Q", header, 16)[0]
        self.entries = struct.unpack_from(">I", header, 28)[0]
        self.block_size = struct.unpack_from(">I", header, 32)[0]
        if self.block_size < SECTOR or self.block_size & (self.block_size - 1):
            raise CorruptPart(f"vhd: block size {self.block_size} is no power of two")
        if self.entries * self.block_size < self.size:
            raise CorruptPart("vhd: the block allocation table does not cover the disk")
        if self.bat_at + 4 * self.entries > file_size:
            raise CorruptPart("vhd: the block allocation table runs past the end")
        sectors = self.block_size // SECTOR
        self.bitmap_size = (sectors + 8 * SECTOR - 1) // (8 * SECTOR) * SECTOR

    def _raw(self, offset: int, n: int) -> bytes:
        if offset + n > self.file_size:
            raise CorruptPart(f"vhd: read at {offset} past the end of the file")
        self.stream.seek(offset)
        return self.stream.read(n)

    def _block(self, index: int) -> int:
        """The file offset of block ``index``'s bitmap, or -1 when unallocated."""
        sector = struct.unpack(">I", self._raw(self.bat_at + 4 * index, 4))[0]
        return -1 if sector == UNALLOCATED else sector * SECTOR

    def read(self, offset: int, n: int) -> bytes:
        return read_blocks("vhd", self.size, self.block_size, self._read_in_block, offset, n)

    def _read_in_block(self, index: int, within: int, n: int) -> bytes:
        start = self._block(index)
        if start < 0:
            return bytes(n)
        first, last = within // SECTOR, (within + n - 1) // SECTOR
        bitmap = self._raw(start + first // 8, last // 8 - first // 8 + 1)
        data = bytearray(self._raw(start + self.bitmap_size + within, n))
        for sector in range(first, last + 1):
            bit = sector - first // 8 * 8
            if not bitmap[bit // 8] & (0x80 >> (bit % 8)):
                lo = max(sector * SECTOR, within) - within
                hi = min((sector + 1) * SECTOR, within + n) - within
                data[lo:hi] = bytes(hi - lo)
        return bytes(data)


def read_blocks(kind: str, size: int, block_size: int,
                in_block: Callable[[int, int, int], bytes], offset: int, n: int) -> bytes:
    """``n`` bytes at ``offset`` of a virtual disk of ``size`` bytes stored in blocks
    (dynamic VHD, VHDX): ``in_block(index, within, count)`` reads within one block."""
    if offset < 0 or offset + n > size:
        raise CorruptPart(f"{kind}: read at {offset} past the disk's {size} bytes")
    out = bytearray()
    while n > 0:
        index, within = divmod(offset, block_size)
        take = min(n, block_size - within)
        out += in_block(index, within, take)
        offset, n = offset + take, n - take
    return bytes(out)


def open_vhd(stream: BinaryIO, size: int) -> StreamDisk | DynamicDisk:
    """The virtual disk of the VHD in ``stream``."""
    footer = read_footer(stream, size)
    if footer is None:
        stream.seek(0)
        footer = stream.read(512)  # a dynamic disk's copy (its end may be cut off)
        if len(footer) < 512 or not footer.startswith(COOKIE):
            raise CorruptPart("vhd: no footer")
    disk_type = struct.unpack_from(">I", footer, 60)[0]
    if disk_type == FIXED:
        data_size = size - 512 if size % 512 == 0 or size < 511 else size - 511
        return StreamDisk(stream, min(data_size, struct.unpack_from(">Q", footer, 48)[0]))
    if disk_type == DYNAMIC:
        return DynamicDisk(stream, size, footer)
    if disk_type == DIFFERENCING:
        raise Unsupported("vhd: a differencing disk (its parent is not attached)")
    raise CorruptPart(f"vhd: unknown disk type {disk_type}")

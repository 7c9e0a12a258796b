"""Microsoft VHDX disks ([MS-VHDX] 2.0) as a :class:`decoders.fat.Disk`, read lazily.

The file starts with the ``vhdxfile`` identifier; two headers (at 64 and 128 KiB,
``head``; not read here: they only matter for the log) and two region tables (192 and
256 KiB, ``regi``: the first that is there is used) follow. The region table locates the block
allocation table (BAT) and the metadata region, whose items give the block size, the
virtual disk size and the logical sector size. BAT entries are 64-bit: the state in
the low 3 bits (6 fully present, 7 partially present; anything else reads as zeros
here) and the block's file offset in MiB in bits 20-63; after every ``chunk ratio``
payload entries comes one sector bitmap entry, which only differencing disks use.
Differencing disks (a parent) are not read, nor is a log that was not replayed
(written as it is: a disk whose last writes sit in the log reads as before them).
Checksums (CRC-32C) are not enforced, as for VHD: damaged metadata still gets its
contents scanned where it can be read.
"""

from __future__ import annotations

import struct
import uuid
from typing import BinaryIO

from decoders.base import CorruptPart, Unsupported
from decoders.vhd import read_blocks

KIB = 1024
BAT_REGION = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08").bytes_le
METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E").bytes_le
FILE_PARAMETERS = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B").bytes_le
DISK_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8").bytes_le
SECTOR_SIZE = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F").bytes_le
PRESENT = (6, 7)  # PAYLOAD_BLOCK_FULLY_PRESENT, PAYLOAD_BLOCK_PARTIALLY_PRESENT
HAS_PARENT = 0x2


class VhdxDisk:
    """The virtual disk of a VHDX file."""

    def __init__(self, stream: BinaryIO, file_size: int) -> None:
        self.stream, self.file_size = stream, file_size
        if self._raw(0, 8) != b"vhdxfile":
            raise CorruptPart("vhdx: no file type identifier")
        regions = self._regions()
        if BAT_REGION not in regions or METADATA_REGION not in regions:
            raise CorruptPart("vhdx: the region table names no BAT or metadata region")
        self.bat_at, bat_length = regions[BAT_REGION]
        items = self._metadata(*regions[METADATA_REGION])
        try:
            self.block_size, flags = struct.unpack("<II", items[FILE_PARAMETERS][:8])
            self.size = struct.unpack("<Q", items[DISK_SIZE][:8])[0]
            sector = struct.unpack("<I", items[SECTOR_SIZE][:4])[0]
        except (KeyError, struct.error) as exc:
            raise CorruptPart("vhdx: a required metadata item is missing") from exc
        if flags & HAS_PARENT:
            raise Unsupported("vhdx: a differencing disk (its parent is not attached)")
        if sector not in (512, 4096) or not 1 << 20 <= self.block_size <= 256 << 20 \
                or self.block_size & (self.block_size - 1):
            raise CorruptPart("vhdx: bad block or sector size")
        self.chunk_ratio = (1 << 23) * sector // self.block_size
        blocks = -(-self.size // self.block_size)
        if 8 * (blocks + blocks // self.chunk_ratio) > bat_length:
            raise CorruptPart("vhdx: the BAT does not cover the disk")

    def _raw(self, offset: int, n: int) -> bytes:
        if offset < 0 or offset + n > self.file_size:
            raise CorruptPart(f"vhdx: read at {offset} past the end of the file")
        self.stream.seek(offset)
        return self.stream.read(n)

    def _regions(self) -> dict[bytes, tuple[int, int]]:
        """Region GUID -> (file offset, length), from the first region table that is there."""
        for at in (192 * KIB, 256 * KIB):
            table = self._raw(at, 64 * KIB) if at + 64 * KIB <= self.file_size else b""
            if table[:4] != b"regi":
                continue
            count = min(struct.unpack_from("<I", table, 8)[0], 2047)
            found = {}
            for n in range(count):
                guid, offset, length = struct.unpack_from("<16sQI", table, 16 + 32 * n)
                found[guid] = (offset, length)
            return found
        raise CorruptPart("vhdx: no region table")

    def _metadata(self, at: int, length: int) -> dict[bytes, bytes]:
        """Metadata item GUID -> its bytes."""
        table = self._raw(at, 64 * KIB)
        if table[:8] != b"metadata":
            raise CorruptPart("vhdx: no metadata table")
        count = min(struct.unpack_from("<H", table, 10)[0], 2047)
        items = {}
        for n in range(count):
            guid, offset, size = struct.unpack_from("<16sII", table, 32 + 32 * n)
            if offset + size <= length and size <= 64 * KIB:
                items[guid] = self._raw(at + offset, size)
        return items

    def read(self, offset: int, n: int) -> bytes:
        return read_blocks("vhdx", self.size, self.block_size, self._read_in_block, offset,
                           n)

    def _read_in_block(self, index: int, within: int, n: int) -> bytes:
        entry = struct.unpack("<Q", self._raw(
            self.bat_at + 8 * (index + index // self.chunk_ratio), 8))[0]
        if entry & 7 in PRESENT:
            return self._raw((entry >> 20) * (1 << 20) + within, n)
        return bytes(n)

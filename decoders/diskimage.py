"""Disk images: the files of FAT volumes in raw images (``img``), VHD and VHDX disks.

amavis hands such attachments to 7-Zip, which reads FAT, MBR and VHD; the maintained
Python readers are GPL/AGPL, so this reader is our own (:mod:`decoders.fat`,
:mod:`decoders.vhd`, :mod:`decoders.vhdx`; 7-Zip reads VHDX too). A disk is either
a FAT volume itself (a floppy or ``mkfs.vfat -C`` image) or an MBR-partitioned disk
whose FAT partitions (types 0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, their hidden variants
and 0xEF) are read in turn. Other partitions
(NTFS, Linux, extended, GPT's protective entry) are not read: they are named in a
``DECODE_UNSUPPORTED`` hit, and the image still goes to ClamAV whole.

Each file is a child named with its path inside the volume (``docs/invoice.exe``;
``p2/...`` in front for a file of the second partition when the disk has several).
Bytes are read lazily from the part (never the whole virtual disk) and written through
the counted writer, so the quota, file count, depth and time limits apply as to any
other container; a damaged volume (chain loop, truncated image, lying sizes) keeps
what could be read and ends ``DECODE_CORRUPT``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from decoders.base import Child, CorruptPart, Unsupported
from decoders.context import DecodeContext
from decoders.fat import Disk, FatVolume, SliceDisk
from decoders.mimeutil import clean_name
from decoders.part import Part
from decoders.vhd import StreamDisk, open_vhd
from decoders.vhdx import VhdxDisk

FAT_PARTITIONS = frozenset({0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E,
                            0x11, 0x14, 0x16, 0x1B, 0x1C, 0x1E, 0xEF})
SECTOR = 512


def partitions(boot: bytes, disk_size: int) -> list[tuple[int, int, int]] | None:
    """(number, type, byte offset, byte size) ... of the MBR's primary partitions, or
    None when ``boot`` holds no valid partition table."""
    if len(boot) < 512 or boot[510:512] != b"\x55\xaa":
        return None
    found = []
    for n in range(4):
        entry = boot[446 + 16 * n : 462 + 16 * n]
        if entry[0] not in (0, 0x80):
            return None
        kind = entry[4]
        start, count = struct.unpack_from("<II", entry, 8)
        if kind == 0 or count == 0:
            continue
        if start == 0 or (start + count) * SECTOR > disk_size + SECTOR * 2048:
            return None  # (a partition may end a little past a truncated image)
        found.append((n + 1, kind, start * SECTOR, count * SECTOR))
    return found or None


def _volumes(disk: Disk, ctx: DecodeContext) -> tuple[list[tuple[str, FatVolume]], list[str]]:
    """The FAT volumes on ``disk`` (path prefix, volume) and what was not read."""
    volume = FatVolume.open(disk, ctx)
    if volume is not None:
        return [("", volume)], []
    boot = disk.read(0, SECTOR) if disk.size >= SECTOR else b""
    table = partitions(boot, disk.size)
    if table is None and _says_fat(boot):
        raise CorruptPart("disk image: a FAT boot sector that does not hold together")
    if table is None:  # NTFS, exFAT, a boot loader...: formats not read here
        raise Unsupported("disk image: neither a FAT volume nor an MBR partition table")
    out, skipped = [], []
    for number, kind, start, size in table:
        size = min(size, max(0, disk.size - start))
        inner = FatVolume.open(SliceDisk(disk, start, size), ctx) if size else None
        if kind in FAT_PARTITIONS and inner is not None:
            out.append((f"p{number}/" if len(table) > 1 else "", inner))
        else:
            skipped.append(f"partition {number} (type 0x{kind:02x})")
    return out, skipped


def _says_fat(boot: bytes) -> bool:
    """Whether a boot sector names itself FAT (the FAT12/16 or FAT32 type string)."""
    return boot[54:58] == b"FAT1" or boot[82:87] == b"FAT32"


def _disk(part: Part, stream: BinaryIO) -> Disk:
    if part.detected_type == "vhd":
        return open_vhd(stream, part.size)
    if part.detected_type == "vhdx":
        return VhdxDisk(stream, part.size)
    return StreamDisk(stream, part.size)


class DiskImageDecoder:
    """Extracts the files of FAT volumes in raw disk images, VHD and VHDX disks."""

    name = "diskimage"
    handles = frozenset({"img", "vhd", "vhdx"})
    order = 50

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        with part.open() as stream:
            volumes, skipped = _volumes(_disk(part, stream), ctx)
            damage: list[str] = []
            for prefix, volume in volumes:
                yield from _files(volume, prefix, ctx)
                damage.extend(volume.damage)
        if damage:
            raise CorruptPart("disk image: " + "; ".join(damage[:3])[:180])
        if skipped:
            raise Unsupported("disk image: not FAT, not read: " + ", ".join(skipped))


def _files(volume: FatVolume, prefix: str, ctx: DecodeContext) -> Iterator[Child]:
    for file in volume.files():
        ctx.check_time()
        writer = ctx.writer()
        try:
            complete = volume.copy(file, writer)
        except CorruptPart as exc:
            volume.damage.append(f"{file.path}: {exc}")
            complete = False
        except BaseException:
            writer.discard()
            raise
        flags = set() if complete else {"corrupt"}
        yield Child(blob=writer.finish(), name=clean_name(prefix + file.path), flags=flags)

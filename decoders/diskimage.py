"""Disk images: the files of FAT volumes in raw images (``img``), VHD and VHDX disks.

amavis 2.13 leaves such attachments whole for the virus scanner (its file-type map and
``@decoders`` have no entry for them), although 7-Zip, which it runs for other formats,
reads FAT, MBR, GPT, VHD and VHDX; reading them is this project's choice (malware mail
moved to them). The maintained Python readers are GPL/AGPL, so this reader is our own
(:mod:`decoders.fat`, :mod:`decoders.vhd`, :mod:`decoders.vhdx`). A disk is either
a FAT volume itself (a floppy or ``mkfs.vfat -C`` image) or a partitioned disk (MBR
with logical partitions, or GPT: :mod:`decoders.partitions`) whose partitions are read
when they start with a FAT boot sector, whatever type the table gives them (Windows
and 7-Zip go by the contents too). Other partitions (NTFS, Linux...) are not read:
they are named in a ``DECODE_UNSUPPORTED`` hit, and the image still goes to ClamAV.

Each file is a child named with its path inside the volume (``docs/invoice.exe``;
``p2/...`` in front for a file of the second partition when the disk has several).
Bytes are read lazily from the part (never the whole virtual disk) and written through
the counted writer, so the quota, file count, depth and time limits apply as to any
other container; a damaged volume (chain loop, truncated image, lying sizes) keeps
what could be read and ends ``DECODE_CORRUPT``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from decoders.base import Child, CorruptPart, Unsupported
from decoders.context import DecodeContext
from decoders.fat import Disk, FatVolume, SliceDisk
from decoders.mimeutil import clean_name
from decoders.part import Part
from decoders.partitions import partitions
from decoders.vhd import StreamDisk, open_vhd
from decoders.vhdx import VhdxDisk

SECTOR = 512


def _volumes(disk: Disk, ctx: DecodeContext) -> tuple[list[tuple[str, FatVolume]], list[str]]:
    """The FAT volumes on ``disk`` (path prefix, volume) and what was not read."""
    volume = FatVolume.open(disk, ctx)
    if volume is not None:
        return [("", volume)], []
    boot = disk.read(0, SECTOR) if disk.size >= SECTOR else b""
    table = partitions(disk)
    if table is None and _says_fat(boot):
        raise CorruptPart("disk image: a FAT boot sector that does not hold together")
    if table is None:  # NTFS, exFAT, a boot loader...: formats not read here
        raise Unsupported("disk image: neither a FAT volume nor a partition table")
    out, skipped = [], []
    for entry in table:
        size = min(entry.size, max(0, disk.size - entry.start))
        inner = FatVolume.open(SliceDisk(disk, entry.start, size), ctx) if size else None
        if inner is not None:  # by its boot sector, whatever type the table gives it
            out.append((f"{entry.label}/" if len(table) > 1 else "", inner))
        else:
            skipped.append(f"partition {entry.label[1:]} (type {entry.kind})")
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

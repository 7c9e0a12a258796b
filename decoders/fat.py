"""FAT12/16/32 volumes: the files and directories of a FAT file system, read lazily.

Our own reader, after Microsoft's "FAT: General Overview of On-Disk Format" (fatgen103):
the boot sector's BIOS parameter block, the FAT (its first copy), the root directory (a
fixed area for FAT12/16, a cluster chain for FAT32), subdirectories, long file names
(LFN entries whose checksum matches their short entry; otherwise the 8.3 name).
Deleted entries and volume labels are skipped. Every cluster chain is followed with loop
and bounds protection; a chain that loops, leaves the volume or ends before the file's
declared size ends the file there (``corrupt``), and the volume reports the damage.

Reads go through a :class:`Disk` (``size`` and ``read(offset, n)``), so a volume inside
a partition or a virtual disk is read in place, a sector or cluster at a time.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from decoders.base import CorruptPart
from decoders.context import BlobWriter, DecodeContext

MAX_DIR_ENTRIES = 65536  # fatgen103: a directory holds at most 65,536 entries
MAX_DIR_DEPTH = 64
ATTR_LFN, ATTR_VOLUME, ATTR_DIR = 0x0F, 0x08, 0x10
_FAT_CACHE = 64  # FAT sectors kept


class Disk(Protocol):
    """Random access to a disk or volume's bytes; ``read`` raises CorruptPart past the
    data that is there."""

    size: int

    def read(self, offset: int, n: int) -> bytes: ...


class SliceDisk:
    """``size`` bytes of another disk from ``start`` (a partition)."""

    def __init__(self, disk: Disk, start: int, size: int) -> None:
        self.disk, self.start, self.size = disk, start, size

    def read(self, offset: int, n: int) -> bytes:
        if offset < 0 or offset + n > self.size:
            raise CorruptPart(f"read at {offset} past the partition's {self.size} bytes")
        return self.disk.read(self.start + offset, n)


@dataclass(frozen=True, slots=True)
class Geometry:
    """What the boot sector says, checked against itself and the volume's size."""

    bytes_per_sector: int
    cluster_size: int
    fat_offset: int
    fat_bits: int
    root_offset: int  # FAT12/16: the fixed root directory area
    root_entries: int
    root_cluster: int  # FAT32
    data_offset: int
    clusters: int


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def parse_boot_sector(sector: bytes, volume_size: int) -> Geometry | None:
    """The volume's geometry, or None when ``sector`` is no FAT boot sector."""
    if len(sector) < 512 or sector[0] not in (0xEB, 0xE9) or sector[510:512] != b"\x55\xaa":
        return None
    bps, spc, reserved, nfats, root_entries, total16, media, fat16 = struct.unpack_from(
        "<HBHBHHBH", sector, 11)
    total32, fat32 = (struct.unpack_from("<I", sector, 32)[0],
                      struct.unpack_from("<I", sector, 36)[0])
    if bps not in (512, 1024, 2048, 4096) or not _power_of_two(spc) or spc > 128:
        return None
    if reserved == 0 or nfats == 0 or media not in (0xF0, *range(0xF8, 0x100)):
        return None
    fat_sectors = fat16 or fat32
    total = total16 or total32
    root_sectors = (root_entries * 32 + bps - 1) // bps
    data_start = reserved + nfats * fat_sectors + root_sectors
    if fat_sectors == 0 or total <= data_start or data_start * bps > volume_size:
        return None
    clusters = (total - data_start) // spc
    # FAT32 by its BPB (no 16-bit FAT size), as Linux and 7-Zip read it: mkfs.fat makes
    # FAT32 volumes of fewer clusters than fatgen103's 65,525; FAT12/16 by cluster count
    bits = 32 if fat16 == 0 else 12 if clusters < 4085 else 16
    if bits == 32 and root_entries != 0:
        return None
    if fat_sectors * bps * 8 < (clusters + 2) * bits:
        return None  # the FAT cannot hold an entry for every cluster
    root_cluster = struct.unpack_from("<I", sector, 44)[0] if bits == 32 else 0
    return Geometry(bps, bps * spc, reserved * bps, bits, (reserved + nfats * fat_sectors) * bps,
                    root_entries, root_cluster, data_start * bps, clusters)


def lfn_checksum(short: bytes) -> int:
    """The checksum of an 11-byte short name that its LFN entries carry."""
    total = 0
    for byte in short:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


def short_name(entry: bytes) -> str:
    """The 8.3 name of a directory entry (NT's lower-case flags applied)."""
    base, ext = bytearray(entry[0:8].rstrip(b" ")), entry[8:11].rstrip(b" ")
    if base[:1] == b"\x05":
        base[0] = 0xE5
    name, suffix = base.decode("cp437"), ext.decode("cp437")
    if entry[12] & 0x08:
        name = name.lower()
    if entry[12] & 0x10:
        suffix = suffix.lower()
    return f"{name}.{suffix}" if suffix else name


@dataclass(slots=True)
class FatFile:
    """A file found in a directory: its path, first cluster and declared size."""

    path: str
    cluster: int
    size: int


class _LongName:
    """Collects the LFN entries that precede a short entry."""

    def __init__(self) -> None:
        self.parts: dict[int, str] = {}
        self.checksum = -1
        self.expected = 0

    def add(self, entry: bytes) -> None:
        seq = entry[0] & 0x1F
        if entry[0] & 0x40:  # the last (first stored) entry starts a new name
            self.parts, self.checksum, self.expected = {}, entry[13], seq
        elif entry[13] != self.checksum:
            self.expected = 0
        raw = entry[1:11] + entry[14:26] + entry[28:32]
        self.parts[seq] = raw.decode("utf-16-le", "replace")

    def take(self, short: bytes) -> str | None:
        """The long name for the short entry ``short``, or None (missing or stale)."""
        parts, self.parts = self.parts, {}
        if not self.expected or self.checksum != lfn_checksum(short):
            return None
        if sorted(parts) != list(range(1, self.expected + 1)):
            return None
        name = "".join(parts[i] for i in range(1, self.expected + 1))
        return name.split("\0", 1)[0] or None


class FatVolume:
    """A FAT volume on a :class:`Disk`."""

    def __init__(self, disk: Disk, geometry: Geometry, ctx: DecodeContext) -> None:
        self.disk, self.geo, self.ctx = disk, geometry, ctx
        self.damage: list[str] = []
        self._fat: dict[int, bytes] = {}
        self._dirs_seen: set[int] = set()

    @classmethod
    def open(cls, disk: Disk, ctx: DecodeContext) -> FatVolume | None:
        """The volume, or None when the disk does not start with a FAT boot sector."""
        if disk.size < 512:
            return None
        geometry = parse_boot_sector(disk.read(0, 512), disk.size)
        return None if geometry is None else cls(disk, geometry, ctx)

    def _fat_entry(self, cluster: int) -> int:
        bits = self.geo.fat_bits
        offset = cluster * bits // 8
        bps = self.geo.bytes_per_sector
        sector = offset // bps
        raw = self._fat_sector(sector) + self._fat_sector(sector + 1)
        at = offset % bps
        if bits == 12:
            value = struct.unpack_from("<H", raw, at)[0]
            return value >> 4 if cluster & 1 else value & 0xFFF
        if bits == 16:
            return struct.unpack_from("<H", raw, at)[0]
        return struct.unpack_from("<I", raw, at)[0] & 0x0FFFFFFF

    def _fat_sector(self, sector: int) -> bytes:
        data = self._fat.get(sector)
        if data is None:
            if len(self._fat) >= _FAT_CACHE:
                self._fat.clear()
            bps = self.geo.bytes_per_sector
            offset = self.geo.fat_offset + sector * bps
            data = self.disk.read(offset, bps) if offset + bps <= self.disk.size else b""
            self._fat[sector] = data.ljust(bps, b"\0")
        return data

    def chain(self, first: int, what: str) -> Iterator[int]:
        """The clusters of the chain starting at ``first``; damage is recorded, never raised."""
        end = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}[self.geo.fat_bits]
        seen: set[int] = set()
        cluster = first
        while True:
            if cluster < 2 or cluster >= self.geo.clusters + 2:
                self.damage.append(f"{what}: cluster {cluster} outside the volume")
                return
            if cluster in seen:
                self.damage.append(f"{what}: cluster chain loops at {cluster}")
                return
            seen.add(cluster)
            if len(seen) % 256 == 0:
                self.ctx.check_time()
            yield cluster
            cluster = self._fat_entry(cluster)
            if cluster >= end:
                return

    def read_cluster(self, cluster: int) -> bytes:
        size = self.geo.cluster_size
        return self.disk.read(self.geo.data_offset + (cluster - 2) * size, size)

    def files(self) -> Iterator[FatFile]:
        """Every file of the volume, directories walked depth first."""
        if self.geo.fat_bits == 32:
            yield from self._walk(self._chain_entries(self.geo.root_cluster, "/"), "", 0)
        else:
            yield from self._walk(self._root_entries(), "", 0)

    def _root_entries(self) -> Iterator[bytes]:
        for i in range(self.geo.root_entries):
            yield self.disk.read(self.geo.root_offset + 32 * i, 32)

    def _chain_entries(self, first: int, path: str) -> Iterator[bytes]:
        if first in self._dirs_seen:
            self.damage.append(f"{path}: directory seen before (loop)")
            return
        self._dirs_seen.add(first)
        count = 0
        for cluster in self.chain(first, path):
            data = self.read_cluster(cluster)
            for at in range(0, len(data), 32):
                count += 1
                if count > MAX_DIR_ENTRIES:
                    self.damage.append(f"{path}: more than {MAX_DIR_ENTRIES} entries")
                    return
                yield data[at : at + 32]

    def _walk(self, entries: Iterator[bytes], prefix: str, depth: int) -> Iterator[FatFile]:
        self.ctx.check_time()
        longname = _LongName()
        subdirs: list[tuple[str, int]] = []
        for entry in entries:
            if entry[0] == 0:
                break
            attr = entry[11]
            if entry[0] == 0xE5:
                longname = _LongName()
                continue
            if attr & 0x3F == ATTR_LFN:
                longname.add(entry)
                continue
            name = longname.take(entry[0:11]) or short_name(entry)
            if attr & ATTR_VOLUME or name in (".", ".."):
                continue
            name = name.replace("/", "_").replace("\\", "_")
            cluster = struct.unpack_from("<H", entry, 26)[0]
            if self.geo.fat_bits == 32:
                cluster |= struct.unpack_from("<H", entry, 20)[0] << 16
            if attr & ATTR_DIR:
                subdirs.append((prefix + name + "/", cluster))
            else:
                yield FatFile(prefix + name, cluster, struct.unpack_from("<I", entry, 28)[0])
        for path, cluster in subdirs:
            if depth + 1 >= MAX_DIR_DEPTH:
                self.damage.append(f"{path}: directories nested deeper than {MAX_DIR_DEPTH}")
                continue
            yield from self._walk(self._chain_entries(cluster, path), path, depth + 1)

    def copy(self, file: FatFile, writer: BlobWriter) -> bool:
        """Write ``file``'s bytes into ``writer``; False when its chain was cut short."""
        left = file.size
        if left == 0:
            return True
        for cluster in self.chain(file.cluster, file.path):
            data = self.read_cluster(cluster)
            writer.write(data[:left])
            left -= min(left, len(data))
            if left == 0:
                return True
        self.damage.append(f"{file.path}: {left} of {file.size} bytes missing")
        return False

"""Partition tables of a disk image: MBR (with the logical partitions of an extended
partition) and GPT (behind its protective MBR entry 0xEE).

Only what locates the partitions is read: MBR entries (status, type, first sector,
sector count; an extended partition's chain of EBRs, each holding one logical
partition and the link to the next), and the GPT header at LBA 1 with its partition
entries (type GUID, first and last LBA). Chains are followed at most
:data:`MAX_PARTITIONS` times and never to the same sector twice. Checksums (GPT's
CRC-32) are not enforced: a damaged table still gets its partitions scanned.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from decoders.fat import Disk

SECTOR = 512
MAX_PARTITIONS = 128
EXTENDED = frozenset({0x05, 0x0F, 0x85})
GPT_PROTECTIVE = 0xEE
_SLACK = SECTOR * 2048  # a partition may end a little past a truncated image


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition: its label in part names (``p5``), its type as a table gives it."""

    label: str
    kind: str
    start: int
    size: int


def _entries(boot: bytes) -> list[tuple[int, int, int, int]] | None:
    """(slot 1-4, type, first sector, sector count) of the non-empty entries of an MBR or EBR
    sector, or None when it is no partition table."""
    if len(boot) < SECTOR or boot[510:512] != b"\x55\xaa":
        return None
    found = []
    for n in range(4):
        entry = boot[446 + 16 * n : 462 + 16 * n]
        if entry[0] not in (0, 0x80):
            return None
        start, count = struct.unpack_from("<II", entry, 8)
        if entry[4] != 0 and count != 0:
            found.append((n + 1, entry[4], start, count))
    return found


def _fits(disk: Disk, start: int, size: int) -> bool:
    return start > 0 and start + size <= disk.size + _SLACK


def _logical(disk: Disk, ext_start: int, first: int) -> list[Partition]:
    """The logical partitions of the extended partition at sector ``ext_start``."""
    out: list[Partition] = []
    seen: set[int] = set()
    ebr = ext_start
    while ebr not in seen and len(out) < MAX_PARTITIONS and (ebr + 1) * SECTOR <= disk.size:
        seen.add(ebr)
        entries = _entries(disk.read(ebr * SECTOR, SECTOR)) or []
        links = [e for e in entries if e[1] in EXTENDED]
        for _, kind, start, count in entries:
            if kind not in EXTENDED and _fits(disk, (ebr + start) * SECTOR, count * SECTOR):
                out.append(Partition(f"p{first + len(out)}", f"0x{kind:02x}",
                                     (ebr + start) * SECTOR, count * SECTOR))
                break
        if not links:
            break
        ebr = ext_start + links[0][2]
    return out


def _gpt(disk: Disk) -> list[Partition] | None:
    """The GPT's partitions, or None when LBA 1 holds no GPT header."""
    if disk.size < 2 * SECTOR:
        return None
    header = disk.read(SECTOR, SECTOR)
    if header[:8] != b"EFI PART":
        return None
    table, count, size = struct.unpack_from("<QII", header, 72)
    if not 128 <= size <= 4096 or size % 8:
        return None
    out = []
    for n in range(min(count, MAX_PARTITIONS)):
        at = table * SECTOR + n * size
        if at + size > disk.size:
            break
        entry = disk.read(at, 128)
        first, last = struct.unpack_from("<QQ", entry, 32)
        if entry[:16] == bytes(16) or last < first:
            continue
        if _fits(disk, first * SECTOR, (last - first + 1) * SECTOR):
            kind = str(uuid.UUID(bytes_le=entry[:16]))
            out.append(Partition(f"p{n + 1}", kind, first * SECTOR, (last - first + 1) * SECTOR))
    return out


def partitions(disk: Disk) -> list[Partition] | None:
    """The disk's partitions, or None when its first sector holds no partition table."""
    entries = _entries(disk.read(0, SECTOR)) if disk.size >= SECTOR else None
    if not entries:
        return None
    if any(entry[1] == GPT_PROTECTIVE for entry in entries):
        found = _gpt(disk)
        if found is not None:
            return found
    out: list[Partition] = []
    for n, kind, start, count in entries:
        if not _fits(disk, start * SECTOR, count * SECTOR):
            return None
        if kind in EXTENDED:  # logical partitions are numbered from 5, as Linux does
            out.extend(_logical(disk, start, 5))
        else:
            out.append(Partition(f"p{n}", f"0x{kind:02x}", start * SECTOR, count * SECTOR))
    return out

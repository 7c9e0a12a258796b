"""Disk images built at test time: FAT volumes by dosfstools and mtools (``mkfs.vfat
-C``, ``mmd``, ``mcopy``), an MBR partition table, fixed and dynamic VHDs written here
after Microsoft's "Virtual Hard Disk Image Format Specification"."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

VHD_BLOCK = 2 * 1024 * 1024
NO_OFFSET = 0xFFFFFFFFFFFFFFFF


def need_mtools() -> None:
    if not (shutil.which("mkfs.vfat") or Path("/usr/sbin/mkfs.vfat").exists()) \
            or not shutil.which("mcopy"):
        pytest.skip("Debian packages dosfstools and mtools are not installed")


def _mkfs() -> str:
    return shutil.which("mkfs.vfat") or "/usr/sbin/mkfs.vfat"


def fat_image(files: dict[str, bytes], bits: int = 12, kib: int = 1024,
              extra: tuple[str, ...] = (), delete: tuple[str, ...] = ()) -> bytes:
    """A FAT volume of ``kib`` KiB holding ``files`` (paths with ``/``; directories made
    as needed), after ``delete`` (paths removed again with mdel)."""
    need_mtools()
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, "v.img")
        options = ["-s", "1"] if bits != 32 else ["-s", "1", "-S", "512"]
        subprocess.run([_mkfs(), "-C", "-F", str(bits), *options, *extra, image, str(kib)],
                       check=True, capture_output=True)
        env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
        made: set[str] = set()
        for path, data in files.items():
            parts = path.split("/")
            for i in range(1, len(parts)):
                folder = "/".join(parts[:i])
                if folder.lower() not in made:  # FAT names ignore case
                    subprocess.run(["mmd", "-i", image, "::" + folder], check=True, env=env,
                                   capture_output=True)
                    made.add(folder.lower())
            source = os.path.join(tmp, "src")
            Path(source).write_bytes(data)
            subprocess.run(["mcopy", "-i", image, source, "::" + path], check=True, env=env,
                           capture_output=True)
        for path in delete:
            subprocess.run(["mdel", "-i", image, "::" + path], check=True, env=env,
                           capture_output=True)
        return Path(image).read_bytes()


def mbr_disk(volumes: list[tuple[int, bytes]], start: int = 64) -> bytes:
    """A disk with an MBR partition table: one primary partition of the given type per
    volume, the first at sector ``start``, each following the one before."""
    table = bytearray(512)
    body = bytearray()
    sector = start
    for n, (kind, volume) in enumerate(volumes):
        sectors = (len(volume) + 511) // 512
        struct.pack_into("<B3sB3sII", table, 446 + 16 * n, 0x80 if n == 0 else 0,
                         b"\xfe\xff\xff", kind, b"\xfe\xff\xff", sector, sectors)
        body += volume.ljust(sectors * 512, b"\0")
        sector += sectors
    table[510:512] = b"\x55\xaa"
    return bytes(table) + bytes(512 * (start - 1)) + bytes(body)


def vhd_checksum(record: bytes, at: int) -> int:
    """The spec's checksum: ones' complement of the sum of the record's bytes, the four
    checksum bytes at ``at`` left out."""
    return ~(sum(record[:at]) + sum(record[at + 4 :])) & 0xFFFFFFFF


def _chs(size: int) -> tuple[int, int, int]:
    """The spec's CHS geometry calculation (appendix), for the footer."""
    total = min(size // 512, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
    else:
        spt = 17
        cyl_heads = total // spt
        heads = max(4, (cyl_heads + 1023) // 1024)
        if cyl_heads >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cyl_heads = total // spt
        if cyl_heads >= heads * 1024:
            spt, heads = 63, 16
    return total // spt // heads, heads, spt


def vhd_footer(size: int, dynamic: bool) -> bytes:
    footer = bytearray(512)
    cylinders, heads, spt = _chs(size)
    struct.pack_into(">8sIIQI4sI4sQQHBBII16sB", footer, 0, b"conectix", 2, 0x00010000,
                     512 if dynamic else NO_OFFSET, 0, b"test", 0x00010000, b"Wi2k",
                     size, size, cylinders, heads, spt, 3 if dynamic else 2, 0,
                     bytes(range(16)), 0)
    struct.pack_into(">I", footer, 64, vhd_checksum(bytes(footer), 64))
    return bytes(footer)


def fixed_vhd(disk: bytes) -> bytes:
    """A fixed VHD: the raw disk (whole sectors) and its footer."""
    disk = disk.ljust((len(disk) + 511) // 512 * 512, b"\0")
    return disk + vhd_footer(len(disk), dynamic=False)


def dynamic_vhd(disk: bytes, size: int | None = None, block: int = VHD_BLOCK,
                clear_sectors: tuple[int, ...] = ()) -> bytes:
    """A dynamic VHD of ``size`` bytes (default: the disk's) holding ``disk`` at its
    start: blocks of zeros stay unallocated, the others are stored in reverse order (so
    only the BAT finds them), their sector bitmaps all set but for ``clear_sectors``
    (disk sector numbers, whose stored bytes must then read as zeros)."""
    size = size or (len(disk) + 511) // 512 * 512
    entries = (size + block - 1) // block
    footer = vhd_footer(size, dynamic=True)
    header = bytearray(1024)
    struct.pack_into(">8sQQIIII", header, 0, b"cxsparse", NO_OFFSET, 1536, 0x00010000,
                     entries, block, 0)
    struct.pack_into(">I", header, 36, vhd_checksum(bytes(header), 36))
    bat_size = (4 * entries + 511) // 512 * 512
    bat = bytearray(b"\xff" * bat_size)
    bitmap_size = (block // 512 // 8 + 511) // 512 * 512
    blocks = bytearray()
    data_at = 1536 + bat_size
    used = [i for i in range(entries) if disk[i * block : (i + 1) * block].strip(b"\0")]
    for i in reversed(used):
        bitmap = bytearray(b"\xff" * bitmap_size)
        for sector in clear_sectors:
            if sector * 512 // block == i:
                bit = sector - i * block // 512
                bitmap[bit // 8] &= ~(0x80 >> (bit % 8)) & 0xFF
        struct.pack_into(">I", bat, 4 * i, (data_at + len(blocks)) // 512)
        blocks += bitmap + disk[i * block : (i + 1) * block].ljust(block, b"\0")
    return footer + bytes(header) + bytes(bat) + bytes(blocks) + footer


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of VHDX headers and tables."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _with_crc(record: bytearray) -> bytes:
    struct.pack_into("<I", record, 4, crc32c(bytes(record)))
    return bytes(record)


_MIB = 1 << 20
_GUIDS = {name: uuid.UUID(text).bytes_le for name, text in {
    "bat": "2DC27766-F623-4200-9D64-115E9BFD4A08",
    "metadata": "8B7CA206-4790-4B9A-B8FE-575F050F886E",
    "params": "CAA16737-FA36-4D43-B3B6-33F0AA44E76B",
    "size": "2FA54224-CD1B-4876-B211-5DBED83BF4B8",
    "logical": "8141BF1D-A96F-4709-BA47-F233A8FAAB5F",
    "physical": "CDA348C7-445D-4471-9CC9-E9885251C556",
    "page83": "BECA12AB-B2E6-4523-93EF-C309E000C746",
}.items()}


def vhdx(disk: bytes, size: int | None = None, block: int = _MIB) -> bytes:
    """A dynamic VHDX ([MS-VHDX]) of ``size`` bytes holding ``disk`` at its start: file
    identifier, two headers, two region tables, an empty log, the metadata region, the
    BAT and the blocks that hold data, in reverse order; the others NOT_PRESENT."""
    size = size or (len(disk) + 511) // 512 * 512
    ident = b"vhdxfile" + "scanner tests".encode("utf-16-le")
    headers = b""
    for seq in (2, 1):  # the first header is the current one
        head = bytearray(4 * 1024)
        struct.pack_into("<4sIQ16s16s16sHHIQ", head, 0, b"head", 0, seq, bytes(range(16)),
                         bytes(range(16)), bytes(16), 0, 1, _MIB, _MIB)
        headers += _with_crc(head).ljust(64 * 1024, b"\0")
    blocks = (size + block - 1) // block
    chunk_ratio = (1 << 23) * 512 // block
    bat_entries = blocks + blocks // chunk_ratio + 1
    bat_length = (8 * bat_entries + _MIB - 1) // _MIB * _MIB
    region = bytearray(64 * 1024)
    struct.pack_into("<4sIII", region, 0, b"regi", 0, 2, 0)
    struct.pack_into("<16sQII", region, 16, _GUIDS["metadata"], 2 * _MIB, _MIB, 1)
    struct.pack_into("<16sQII", region, 48, _GUIDS["bat"], 3 * _MIB, bat_length, 1)
    regions = _with_crc(region) * 2
    meta = bytearray(_MIB)
    struct.pack_into("<8sHH", meta, 0, b"metadata", 0, 5)
    values = [("params", struct.pack("<II", block, 0)), ("size", struct.pack("<Q", size)),
              ("logical", struct.pack("<I", 512)), ("physical", struct.pack("<I", 512)),
              ("page83", bytes(range(16)))]
    at = 64 * 1024
    for n, (name, value) in enumerate(values):
        struct.pack_into("<16sIII", meta, 32 + 32 * n, _GUIDS[name], at, len(value), 4)
        meta[at : at + len(value)] = value
        at += len(value)
    bat = bytearray(bat_length)
    data = bytearray()
    data_at = 3 * _MIB + bat_length
    used = [i for i in range(blocks) if disk[i * block : (i + 1) * block].strip(b"\0")]
    for i in reversed(used):
        struct.pack_into("<Q", bat, 8 * (i + i // chunk_ratio),
                         ((data_at + len(data)) // _MIB) << 20 | 6)
        data += disk[i * block : (i + 1) * block].ljust(block, b"\0")
    start = (ident.ljust(64 * 1024, b"\0") + headers + regions).ljust(_MIB, b"\0")
    return start + bytes(_MIB) + bytes(meta) + bytes(bat) + bytes(data)


def sfdisk_disk(label: str, entries: list[tuple[str, bytes | None]], mib: int = 16) -> bytes:
    """A ``mib`` MiB disk partitioned by util-linux's sfdisk (``label: dos`` or ``gpt``):
    one partition of 1 MiB (or the volume's size) per entry, of the entry's sfdisk type
    (a dos type ``5`` opens an extended partition: the entries after it are logical),
    each volume written at the partition's start."""
    sfdisk = shutil.which("sfdisk") or "/sbin/sfdisk"
    if not Path(sfdisk).exists():
        pytest.skip("Debian package fdisk (sfdisk) is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp, "disk.img")
        image.write_bytes(bytes(mib << 20))
        lines = [f"label: {label}"]
        for kind, volume in entries:
            size = "" if volume is None else f"size={max(1, -(-len(volume) // 512))}, "
            lines.append(f"{size}type={kind}")
        subprocess.run([sfdisk, "-q", str(image)], input="\n".join(lines).encode(),
                       check=True, capture_output=True)
        table = json.loads(subprocess.run([sfdisk, "--json", str(image)], check=True,
                                          capture_output=True).stdout)["partitiontable"]
        disk = bytearray(image.read_bytes())
    placed = [p for p in table["partitions"] if p["type"].lower() not in ("5", "f", "85")]
    volumes = [v for _, v in entries if v is not None]
    assert len(placed) == len(volumes), table
    for partition, volume in zip(placed, volumes, strict=True):
        disk[partition["start"] * 512 : partition["start"] * 512 + len(volume)] = volume
    return bytes(disk)

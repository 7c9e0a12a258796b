"""The disk image decoder on real FAT volumes (dosfstools, mtools), MBR disks and VHDs,
and on damaged and hostile images."""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decoders import unpack
from decoders.base import DecodeError, Limits
from decoders.context import DecodeContext
from decoders.diskimage import DiskImageDecoder
from decoders.part import Part
from tests.decoders.builders import message, pe_exe
from tests.decoders.diskimages import (
    dynamic_vhd,
    fat_image,
    fixed_vhd,
    mbr_disk,
    need_mtools,
    sfdisk_disk,
    vhdx,
)
from tests.decoders.test_decode_fuzz import LIMITS, SETTINGS, check_limits, mutate

FILES = {
    "readme.txt": b"hello from the volume\n",
    "Invoice 2024 (copy).pdf.exe": b"MZ" + bytes(range(256)) * 9,
    "Docs/Sub Folder/deep.js": b"WScript.Echo(1)\n" * 300,
    "DOCS/PLAIN.BAT": b"@echo off\r\n",
}


def _decode(data: bytes, kind: str = "img", limits: Limits | None = None) -> tuple[dict, str]:
    """(path -> bytes, the error the decoder ended with or "")."""
    ctx = DecodeContext(limits or Limits(), len(data))
    part = Part(1, (1,), ctx.blob(data, counted=False), detected_type=kind)
    out: dict[str, bytes] = {}
    try:
        for child in DiskImageDecoder().decode(part, ctx):
            out[child.name or ""] = child.blob.read()
    except DecodeError as exc:
        return out, f"{type(exc).__name__}: {exc}"
    finally:
        ctx.cleanup()
    return out, ""


def _expected(prefix: str = "") -> dict[str, bytes]:
    # mtools merges "DOCS" into the existing "Docs" directory (FAT is case-insensitive)
    return {prefix + k.replace("DOCS/", "Docs/"): v for k, v in FILES.items()}


@pytest.fixture(scope="module", params=[12, 16, 32])
def volume(request: pytest.FixtureRequest) -> bytes:
    kib = {12: 1024, 16: 8192, 32: 33300}[request.param]  # mtools: FAT32 from 65,525 clusters
    return fat_image(FILES, bits=request.param, kib=kib)


def test_every_file_of_a_fat_volume_comes_out_under_its_path(volume: bytes) -> None:
    assert _decode(volume) == (_expected(), "")


def test_a_fat_volume_in_a_message_is_typed_img_and_decoded() -> None:
    exe = pe_exe(b"x" * 5000)
    image = fat_image({"a/invoice.exe": exe})
    with unpack(message(("floppy.img", image))) as result:
        parts = [(p.name, p.detected_type, p.size) for p in result.parts[2:]]
        assert parts == [("floppy.img", "img", len(image)), ("a/invoice.exe", "exe-ms", len(exe))]
        assert not result.unchecked and not result.hits


def test_deleted_files_are_skipped() -> None:
    image = fat_image({"keep.txt": b"k", "gone.exe": b"MZ" * 10, "Dir/gone2.exe": b"MZ"},
                      delete=("gone.exe", "Dir/gone2.exe"))
    assert _decode(image) == ({"keep.txt": b"k"}, "")


def _find(image: bytes, needle: bytes) -> int:
    at = image.find(needle)
    assert at > 0
    return at


def test_a_long_name_whose_checksum_does_not_match_falls_back_to_the_short_name() -> None:
    image = bytearray(fat_image({"Long Invoice Name.exe": b"MZ"}))
    short = _find(bytes(image), b"LONGIN~1EXE")
    lfn = short - 32  # the one LFN entry before it ("Long Invoice Name.exe": 21 chars = 2)
    assert image[lfn + 11] == 0x0F
    assert _decode(bytes(image))[0] == {"Long Invoice Name.exe": b"MZ"}
    image[lfn + 13] ^= 0xFF
    image[lfn - 32 + 13] ^= 0xFF
    assert _decode(bytes(image))[0] == {"LONGIN~1.EXE": b"MZ"}


def test_fat_partitions_of_an_mbr_disk_are_read_and_others_named() -> None:
    first = fat_image({"one.txt": b"1"}, kib=512)
    second = fat_image({"x/two.exe": b"MZ2"}, bits=16, kib=4200)
    disk = mbr_disk([(0x01, first), (0x83, b"\x11" * 4096), (0x0E, second)])
    files, error = _decode(disk)
    assert files == {"p1/one.txt": b"1", "p3/x/two.exe": b"MZ2"}
    assert error == "Unsupported: disk image: not FAT, not read: partition 2 (type 0x83)"


def test_logical_partitions_of_an_extended_partition_are_read() -> None:
    """sfdisk's dos label: p1 primary FAT32 (0x0c), p2 extended holding p5 (FAT16,
    0x0e), p6 (Linux, 0x83: not FAT inside) and p7 (FAT12 typed 0x83 by mistake: read
    by its boot sector, as Windows and 7-Zip go by the contents)."""
    disk = sfdisk_disk("dos", [("c", fat_image({"one.txt": b"1"}, kib=512)),
                               ("5", None),
                               ("e", fat_image({"five/5.exe": b"MZ5"}, bits=16, kib=4200)),
                               ("83", b"\x11" * 1024),
                               ("83", fat_image({"seven.txt": b"7"}, kib=512))], mib=24)
    files, error = _decode(disk)
    assert files == {"p1/one.txt": b"1", "p5/five/5.exe": b"MZ5", "p7/seven.txt": b"7"}
    assert error == "Unsupported: disk image: not FAT, not read: partition 6 (type 0x83)"


def test_an_ebr_chain_that_loops_is_followed_once() -> None:
    disk = bytearray(sfdisk_disk("dos", [("5", None),
                                         ("e", fat_image({"a.txt": b"a"}, kib=512)),
                                         ("6", fat_image({"b.txt": b"b"}, kib=512))]))
    ext_start = struct.unpack_from("<I", disk, 446 + 8)[0]
    second_ebr = ext_start + struct.unpack_from("<I", disk, ext_start * 512 + 462 + 8)[0]
    struct.pack_into("<I", disk, second_ebr * 512 + 462 + 8, 0)  # link back to the first
    struct.pack_into("<B", disk, second_ebr * 512 + 462 + 4, 0x05)
    assert _decode(bytes(disk)) == ({"p5/a.txt": b"a", "p6/b.txt": b"b"}, "")


def test_gpt_partitions_are_read() -> None:
    disk = sfdisk_disk("gpt", [
        ("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", fat_image({"data/x.exe": b"MZx"})),
        ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", b"\x22" * 2048),
        ("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", fat_image({"EFI/boot.txt": b"efi"}, kib=512)),
    ])
    files, error = _decode(disk)
    assert files == {"p1/data/x.exe": b"MZx", "p3/EFI/boot.txt": b"efi"}
    assert error == ("Unsupported: disk image: not FAT, not read: "
                     "partition 2 (type 0fc63daf-8483-4772-8e79-3d69d8477de4)")


def test_an_mbr_disk_with_one_partition_needs_no_prefix() -> None:
    files, error = _decode(mbr_disk([(0x0C, fat_image(FILES, bits=32, kib=33300))]))
    assert (files, error) == (_expected(), "")


@pytest.mark.parametrize("build", [fixed_vhd, dynamic_vhd])
@pytest.mark.parametrize("partitioned", [False, True])
def test_vhd_disks(build: object, partitioned: bool) -> None:
    volume = fat_image(FILES, bits=16, kib=8192)
    disk = mbr_disk([(0x06, volume)]) if partitioned else volume
    vhd = build(disk)  # type: ignore[operator]
    assert _decode(vhd, "vhd") == (_expected(), "")


@pytest.mark.parametrize("partitioned", [False, True])
def test_vhdx_disks(partitioned: bool) -> None:
    volume = fat_image(FILES, bits=16, kib=8192)
    disk = mbr_disk([(0x06, volume)]) if partitioned else volume
    assert _decode(vhdx(disk), "vhdx") == (_expected(), "")


def test_a_sparse_two_terabyte_vhdx_is_read_lazily() -> None:
    image = vhdx(fat_image({"payload.exe": b"MZ" * 100}), size=2 << 40, block=8 << 20)
    assert len(image) < 16 << 20  # 262,144 blocks, one allocated
    assert _decode(image, "vhdx") == ({"payload.exe": b"MZ" * 100}, "")


def test_a_vhdx_in_a_message_is_typed_vhdx_and_decoded() -> None:
    with unpack(message(("disk.vhdx", vhdx(fat_image({"a.exe": pe_exe()}))))) as result:
        assert [(p.name, p.detected_type) for p in result.parts[2:]] == [
            ("disk.vhdx", "vhdx"), ("a.exe", "exe-ms")]


def test_vhds_built_here_are_typed_vhd() -> None:
    volume = fat_image({"a.txt": b"a"})
    for vhd in (fixed_vhd(volume), dynamic_vhd(volume)):
        with unpack(message(("disk.vhd", vhd))) as result:
            assert [(p.name, p.detected_type) for p in result.parts[2:]] == [
                ("disk.vhd", "vhd"), ("a.txt", "dat")]


def test_a_dynamic_vhd_sector_whose_bitmap_bit_is_clear_reads_as_zeros() -> None:
    volume = bytearray(fat_image({"big.bin": b"\x41" * 20000}))
    data_at = _find(bytes(volume), b"\x41" * 512)
    sector = data_at // 512 + 1  # the file's second sector
    files, _ = _decode(dynamic_vhd(bytes(volume), clear_sectors=(sector,)), "vhd")
    expected = bytearray(b"\x41" * 20000)
    expected[512 : 1024] = bytes(512)
    assert files == {"big.bin": bytes(expected)}


def test_a_sparse_two_terabyte_dynamic_vhd_is_read_lazily() -> None:
    volume = fat_image({"payload.exe": b"MZ" * 100})
    vhd = dynamic_vhd(volume, size=2 << 40)  # 1,048,576 blocks, one allocated
    assert len(vhd) < 7 << 20
    started = time.monotonic()
    assert _decode(vhd, "vhd") == ({"payload.exe": b"MZ" * 100}, "")
    assert time.monotonic() - started < 10


def _patch_fat(image: bytearray, cluster: int, value: int) -> None:
    """Set FAT12 entry ``cluster`` in both FAT copies of a mkfs.vfat -s 1 floppy."""
    reserved, nfats, fat_sectors = image[14], image[16], struct.unpack_from("<H", image, 22)[0]
    for copy in range(nfats):
        at = (reserved + copy * fat_sectors) * 512 + cluster * 3 // 2
        word = struct.unpack_from("<H", image, at)[0]
        word = (word & 0x000F) | (value << 4) if cluster & 1 else (word & 0xF000) | value
        struct.pack_into("<H", image, at, word)


def _first_cluster(image: bytes, short: bytes) -> int:
    return struct.unpack_from("<H", image, _find(image, short) + 26)[0]


def test_a_cluster_loop_ends_the_file_and_the_image_is_corrupt() -> None:
    image = bytearray(fat_image({"LOOP.BIN": b"L" * 4096, "OK.TXT": b"fine"}))
    first = _first_cluster(bytes(image), b"LOOP    BIN")
    _patch_fat(image, first + 3, first)  # the fourth cluster points back at the first
    struct.pack_into("<I", image, _find(bytes(image), b"LOOP    BIN") + 28, 0xFFFFFFFF)
    with unpack(message(("loop.img", bytes(image)))) as result:
        by_name = {p.name: p for p in result.parts}
        assert by_name["LOOP.BIN"].size == 4 * 512 and "corrupt" in by_name["LOOP.BIN"].flags
        assert by_name["OK.TXT"].data() == b"fine"
        corrupt = [h for h in result.hits if h.symbol == "DECODE_CORRUPT"]
        assert len(corrupt) == 1 and "loops" in corrupt[0].options[1]
        assert result.unchecked and "DECODE_FAIL" not in result.symbols()


def test_cross_linked_entries_are_a_bomb_stopped_by_the_quota() -> None:
    """Every root entry claims the same 200 KB chain: 512 x 200 KB produced from one
    small image; the expansion quota ends it as it ends a zip bomb."""
    image = bytearray(fat_image({"BIG.BIN": b"B" * 200_000}, kib=1024))
    entry_at = _find(bytes(image), b"BIG     BIN")
    entry = bytes(image[entry_at : entry_at + 32])
    for i in range(1, 512):
        name = f"F{i:05d}  BIN".encode()
        image[entry_at + 32 * i : entry_at + 32 * (i + 1)] = name + entry[11:]
    limits = Limits(max_quota=20 << 20)
    with unpack(message(("bomb.img", bytes(image))), limits=limits) as result:
        assert "DECODE_LIMIT_QUOTA" in result.symbols() and result.unchecked
        assert result.ctx is not None and result.ctx.produced <= result.ctx.quota + 200_000


def test_an_image_of_many_files_stops_at_the_file_limit() -> None:
    image = fat_image({f"d/f{i}.txt": b"x" for i in range(60)})
    with unpack(message(("many.img", image)), limits=Limits(max_parts=40)) as result:
        assert len(result.parts) == 40 and "DECODE_LIMIT_FILES" in result.symbols()
        assert result.unchecked


def test_a_directory_pointing_at_itself_is_read_once() -> None:
    image = bytearray(fat_image({"D/a.txt": b"a"}, bits=32, kib=33300))
    dot = _find(bytes(image), b".          \x10")  # D's "." entry holds D's own cluster
    cluster = struct.unpack_from("<H", image, dot + 26)[0]
    entry = bytearray(image[dot : dot + 32])
    entry[0:11] = b"LOOPDIR    "
    image[dot + 96 : dot + 128] = entry  # after ".", ".." and a.txt
    files, error = _decode(bytes(image))
    assert files == {"D/a.txt": b"a"} and cluster > 2
    assert error.startswith("CorruptPart") and "seen before" in error


@pytest.mark.parametrize("damage", ["truncated", "bad boot sector"])
def test_damaged_images_are_corrupt_without_a_failure(damage: str) -> None:
    image = fat_image({"a.txt": b"a" * 3000, "b.txt": b"b"})
    if damage == "truncated":
        image = image[: _find(image, b"a" * 512) + 1024]
    else:
        image = image[:11] + struct.pack("<H", 300) + image[13:]
    with unpack(message(("disk.img", image))) as result:
        assert "DECODE_CORRUPT" in result.symbols(), result.hits
        assert "DECODE_FAIL" not in result.symbols() and result.unchecked
        # cut short: a.txt keeps its first two clusters, b.txt (past the cut) only its
        # name, both flagged; a bad boot sector: nothing is read
        kept = [(p.name, p.size, "corrupt" in p.flags) for p in result.parts[3:]]
        assert kept == ([("a.txt", 1024, True), ("b.txt", 0, True)]
                        if damage == "truncated" else [])


def test_a_boot_sector_of_another_file_system_is_unsupported_not_corrupt() -> None:
    """An NTFS volume (or any MBR-typed image that is neither FAT nor partitioned) is
    no damage: it stays a leaf for ClamAV and the message is not UNCHECKED for it."""
    ntfs = bytearray(1024)
    ntfs[0:11] = b"\xeb\x52\x90NTFS    "
    ntfs[510:512] = b"\x55\xaa"
    with unpack(message(("disk.img", bytes(ntfs)))) as result:
        assert result.parts[2].detected_type == "img"
        assert [h.symbol for h in result.hits] == ["DECODE_UNSUPPORTED"]
        assert not result.unchecked


def test_a_differencing_vhd_is_unsupported() -> None:
    vhd = bytearray(fixed_vhd(fat_image({"a.txt": b"a"})))
    struct.pack_into(">I", vhd, len(vhd) - 512 + 60, 4)
    assert _decode(bytes(vhd), "vhd")[1].startswith("Unsupported")


def _mutated_sample() -> bytes:
    try:
        need_mtools()
    except pytest.skip.Exception:
        return b""
    return dynamic_vhd(mbr_disk([(0x06, fat_image(FILES, kib=256))]))


SAMPLE = _mutated_sample()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1,
                max_size=8), st.sampled_from(["vhd", "img"]))
def test_damaged_images_raise_only_decode_errors(edits: list[tuple[int, int]],
                                                 kind: str) -> None:
    """Byte edits anywhere in a dynamic VHD holding an MBR disk holding a FAT volume
    (or the VHD's first bytes read as a raw image): decode errors, never a crash, and
    never more bytes than the quota."""
    if not SAMPLE:
        pytest.skip("needs dosfstools and mtools")
    raw = bytearray(SAMPLE)
    for pos, value in edits:
        # most edits land in the headers, the tables and the directories
        raw[pos % 16384 if pos & 1 else pos % len(raw)] = value
    ctx = DecodeContext(Limits(), len(raw))
    part = Part(1, (1,), ctx.blob(bytes(raw), counted=False), detected_type=kind)
    try:
        produced = sum(c.blob.size for c in DiskImageDecoder().decode(part, ctx))
        assert produced <= ctx.quota
    except DecodeError:
        pass
    finally:
        ctx.cleanup()


SMALL = fixed_vhd(fat_image({"a/b/c.txt": b"c" * 700, "x.exe": b"MZ"}, kib=160)) \
    if SAMPLE else b""


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 1 << 18), st.integers(0, 255)), max_size=8),
       st.integers(0, 1 << 18))
def test_mutated_images_keep_the_limits_through_unpack(edits: list[tuple[int, int]],
                                                       cut: int) -> None:
    """As the other containers in test_decode_fuzz: no DECODE_FAIL, limits hold."""
    if not SMALL:
        pytest.skip("needs dosfstools and mtools")
    edits = [(pos % 8192, value) for pos, value in edits]  # boot sector, FATs, root
    check_limits(message(("disk.vhd", mutate(SMALL, edits, cut % 3 * cut))), LIMITS)


VHDX_SAMPLE = vhdx(fat_image({"a/b.txt": b"b" * 3000}, kib=256)) if SAMPLE else b""
# the region table, the metadata table and items, the BAT, the volume's boot sector
VHDX_HOT = (192 << 10, 2 << 20, (2 << 20) + (64 << 10), 3 << 20, 4 << 20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(VHDX_HOT), st.integers(0, 127), st.integers(0, 255)),
                min_size=1, max_size=6))
def test_damaged_vhdx_raise_only_decode_errors(edits: list[tuple[int, int, int]]) -> None:
    if not VHDX_SAMPLE:
        pytest.skip("needs dosfstools and mtools")
    raw = bytearray(VHDX_SAMPLE)
    for base, pos, value in edits:
        raw[base + pos] = value
    ctx = DecodeContext(Limits(), len(raw))
    part = Part(1, (1,), ctx.blob(bytes(raw), counted=False), detected_type="vhdx")
    try:
        produced = sum(c.blob.size for c in DiskImageDecoder().decode(part, ctx))
        assert produced <= ctx.quota
    except DecodeError:
        pass
    finally:
        ctx.cleanup()


@pytest.mark.parametrize("size", [8, 100, 511])
def test_a_vhd_cookie_with_less_than_a_footer_behind_it_is_corrupt(size: int) -> None:
    """An attachment that starts with the VHD cookie but is shorter than a footer (found
    by test_decode_fuzz: the 8 octets 'conectix') is a damaged VHD, not a decoder
    failure."""
    blob = (b"conectix" + bytes(range(256)) * 2)[:size]
    with unpack(message(("disk.vhd", blob))) as result:
        assert "DECODE_FAIL" not in result.symbols(), result.hits

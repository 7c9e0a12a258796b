"""Today's shortcut and disk-image deliveries: how .lnk, .iso, .vhd/.vhdx and raw .img
attachments are typed and banned (scanner.banned.MODERN_DELIVERY bans them by name)."""

from __future__ import annotations

import pytest

from decoders import unpack
from decoders.context import Blob
from decoders.filetype import detect
from scanner.banned import build_rules, find_banned
from tests.decoders.builders import (
    fat12_boot_sector,
    libarchive_bytes,
    lnk_bytes,
    message,
    vhd_footer,
    zip_bytes,
)

LNK = lnk_bytes()
FAT = fat12_boot_sector()
FIXED_VHD = FAT + vhd_footer(len(FAT))
DYNAMIC_VHD = vhd_footer(len(FAT), dynamic=True) + b"\0" * 1536 + vhd_footer(len(FAT), True)
VHDX = b"vhdxfile" + "scanner test".encode("utf-16-le") + b"\0" * 4096


def _type(data: bytes) -> str:
    return detect(Blob(len(data), "", data=data))[0]


def _banned_paths(raw: bytes, rules: list[dict] | None = None) -> tuple[list, list[str]]:
    with unpack(raw) as result:
        parts = [(p.name, p.detected_type) for p in result.parts[2:]]
        return parts, [h.options[0] for h in find_banned(result.parts, build_rules(rules or []))]


@pytest.mark.parametrize("data, short", [
    (LNK, "lnk"),
    (FAT, "img"),
    (FIXED_VHD, "vhd"),
    (DYNAMIC_VHD, "vhd"),
    (VHDX, "vhdx"),
])
def test_shortcuts_and_disk_images_have_a_type(data: bytes, short: str) -> None:
    assert _type(data) == short


def test_a_shortcut_inside_a_zip_is_typed_lnk_and_banned_by_its_name() -> None:
    parts, banned = _banned_paths(message(("Invoice.zip", zip_bytes({"Invoice.pdf.lnk": LNK}))))
    assert parts == [("Invoice.zip", "zip"), ("Invoice.pdf.lnk", "lnk")]
    assert len(banned) == 1 and banned[0].endswith("T=lnk,N=Invoice.pdf.lnk")


def test_a_renamed_shortcut_is_banned_by_its_type() -> None:
    """A .lnk named like a document (inside a zip, or as the attachment itself) is a
    shortcut all the same: banned by its detected type, as a renamed exe is."""
    inner = message(("Invoice.zip", zip_bytes({"Invoice.pdf": LNK})))
    parts, banned = _banned_paths(inner)
    assert parts == [("Invoice.zip", "zip"), ("Invoice.pdf", "lnk")]
    assert len(banned) == 1 and banned[0].endswith("T=lnk,N=Invoice.pdf")
    assert len(_banned_paths(message(("scan.pdf", LNK)))[1]) == 1


def test_a_shortcut_inside_an_iso_is_found_and_banned() -> None:
    iso = libarchive_bytes("iso9660", {"Invoice.lnk": LNK, "readme.txt": b"open me\n"})
    parts, banned = _banned_paths(message(("scan_0412.pdf", iso)))
    assert ("scan_0412.pdf", "iso") in parts and ("Invoice.lnk", "lnk") in parts
    assert [n for n, _ in parts] == ["scan_0412.pdf", "Invoice.lnk", "readme.txt"]  # no "."
    assert [b.rsplit("N=", 1)[1] for b in banned] == ["Invoice.lnk"]


@pytest.mark.parametrize("name, data", [
    ("backup.vhd", FIXED_VHD), ("backup.vhdx", VHDX), ("floppy.img", FAT)])
def test_disk_images_are_banned_by_name(name: str, data: bytes) -> None:
    _, banned = _banned_paths(message((name, data)))
    assert len(banned) == 1 and banned[0].endswith(f"N={name}")


@pytest.mark.parametrize("data", [FIXED_VHD, DYNAMIC_VHD, VHDX, FAT])
def test_a_renamed_disk_image_can_be_banned_by_its_type(data: bytes) -> None:
    rules = [{"match": "type", "regex": "^(vhdx?|img)$", "action": "ban"}]
    assert _banned_paths(message(("statement.pdf", data)))[1] == []
    assert len(_banned_paths(message(("statement.pdf", data)), rules)[1]) == 1

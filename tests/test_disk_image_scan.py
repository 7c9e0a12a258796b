"""FAT disk images through ``scanner scan``: an exe inside is BANNED by the shipped
rules, and the ClamAV test file inside is found by a real clamd as a part of its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from scanner.testing.clamd import TESTFILES_DIR, ClamdInstance, clamd_binary
from tests.decoders.builders import message, pe_exe, zip_bytes
from tests.decoders.diskimages import dynamic_vhd, fat_image, mbr_disk, vhdx
from tests.helpers import scan_json

CONFIG = '[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'


def _scan(tmp: Path, raw: bytes, checks: str = CONFIG) -> dict:
    return scan_json(tmp, raw, checks)


def _banned(data: dict) -> list[str]:
    return [h["options"][0] for h in data["hits"] if h["symbol"] == "BANNED_FILE"]


@pytest.mark.parametrize("zipped", [False, True])
def test_an_exe_inside_a_fat_image_under_a_harmless_name_is_banned(tmp_path: Path,
                                                                   zipped: bool) -> None:
    """The image is attached as ``scan.pdf`` so that only what is inside can ban it."""
    exe = pe_exe(bytes(range(256)) * 4)
    inner = {"Scans/invoice.zip": zip_bytes({"invoice.exe": exe})} if zipped \
        else {"Scans/invoice.exe": exe}
    data = _scan(tmp_path, message(("scan.pdf", fat_image({"readme.txt": b"hi\n", **inner}))))
    assert data["category"] == "BANNED", data["symbols"]
    banned = _banned(data)
    assert any(b.endswith(("N=invoice.exe", "N=Scans/invoice.exe")) for b in banned), banned


@pytest.mark.parametrize("build", [dynamic_vhd, vhdx])
def test_an_exe_inside_a_partitioned_virtual_disk_is_banned(tmp_path: Path,
                                                            build: Callable) -> None:
    disk = mbr_disk([(0x0C, fat_image({"setup.exe": pe_exe(b"\0" * 600)}, bits=16,
                                      kib=4200))])
    data = _scan(tmp_path, message(("notes.txt", build(disk))))
    assert data["category"] == "BANNED", data["symbols"]
    assert any(b.endswith("N=setup.exe") for b in _banned(data)), _banned(data)


@pytest.mark.skipif(clamd_binary() is None or not (TESTFILES_DIR / "clam.exe").is_file(),
                    reason="needs clamav-daemon and clamav-testfiles")
def test_clamd_finds_the_test_virus_inside_a_fat_image(tmp_path: Path) -> None:
    clam = (TESTFILES_DIR / "clam.exe").read_bytes()
    image = fat_image({"Docs/clam.dat": clam, "readme.txt": b"open the invoice\n" * 64})
    clamd = ClamdInstance(tmp_path / "clamd")
    clamd.start()
    try:
        checks = ('[checks]\ndisabled = ["auth", "dnsbl", "uribl", "bayes"]\n'
                  f'[checks.settings.clamav]\nendpoints = ["unix:{clamd.socket_path}"]\n')
        data = _scan(tmp_path, message(("backup.img", image)), checks)
    finally:
        clamd.close()
    assert data["category"] == "VIRUS", data["symbols"]
    virus = [h for h in data["hits"] if h["symbol"] == "CLAMAV_VIRUS"]
    assert any("N=Docs/clam.dat" in (h.get("part") or "") for h in virus), virus

"""Every wrapper our decoders claim must lead to the bare test executable as a leaf part."""

from __future__ import annotations

from pathlib import Path

import pytest

from decoders import unpack
from tests.decoders.builders import message

# wrapper -> short type the wrapper itself must be detected as
CLAIMED = {
    "clam.7z": "7z",
    "clam.arj": "arj",
    "clam.bin-be.cpio": "cpio",
    "clam.bin-le.cpio": "cpio",
    "clam.bz2.zip": "zip",
    "clam.cab": "cab",
    "clam.chm": "chm",
    "clam.d64.zip": "zip",
    "clam.exe.binhex": "hqx",
    "clam.exe.bz2": "bz2",
    "clam.exe.html": "html",
    "clam.exe.mbox.base64": "mail",
    "clam.exe.mbox.uu": "uue",
    "clam.exe.rtf": "rtf",
    "clam.exe.szdd": "szdd",
    "clam.impl.zip": "zip",
    "clam.mail": "mail",
    "clam.newc.cpio": "cpio",
    "clam.odc.cpio": "cpio",
    "clam.ole.doc": "doc",
    "clam.pdf": "pdf",
    "clam.sis": "sis",
    "clam.ppt": "ppt",
    "clam.tar.gz": "gz",
    "clam.tnef": "tnef",
    "clam.zip": "zip",
}
# Not reached, with the reason (see decoders/FORMATS.md): they stay leaves for ClamAV.
NOT_CLAIMED = {
    "clam_cache_emax.tgz": "clam.exe sits at depth 20, past the depth limit of 14 (by design)",
    "clam-aspack.exe": "runtime packer",
    "clam-fsg.exe": "runtime packer",
    "clam-mew.exe": "runtime packer",
    "clam-nsis.exe": "NSIS installer: no library",
    "clam-pespin.exe": "runtime packer",
    "clam-petite.exe": "runtime packer",
    "clam-upack.exe": "runtime packer",
    "clam-upx.exe": "runtime packer",
    "clam-wwpack.exe": "runtime packer",
    "clam-yc.exe": "runtime packer",
    "clam.ea05.exe": "AutoIt script executable",
    "clam.ea06.exe": "AutoIt script executable",
    "clam_IScab_ext.exe": "InstallShield container (its MS cab is read, clam.exe is elsewhere)",
    "clam_IScab_int.exe": "InstallShield container (its MS cab is read, clam.exe is elsewhere)",
    "clam_ISmsi_ext.exe": "InstallShield MSI installer",
    "clam_ISmsi_int.exe": "InstallShield MSI installer",
}


def _reached(raw: bytes, digest: str) -> bool:
    with unpack(raw) as result:
        return any(p.sha256 == digest and p.is_leaf for p in result.parts)


@pytest.mark.parametrize("name", sorted(CLAIMED))
def test_wrapper_reaches_clam_exe_as_attachment(
    clam_dir: Path, clam_sha256: str, name: str
) -> None:
    data = (clam_dir / name).read_bytes()
    with unpack(message((name, data))) as result:
        wrapper = result.parts[2]
        assert wrapper.name == name
        assert wrapper.detected_type == CLAIMED[name]
        leaves = [p for p in result.parts if p.sha256 == clam_sha256]
        assert leaves, f"clam.exe not reached through {name}"
        assert all(p.is_leaf and p.detected_type == "exe-ms" for p in leaves)
        assert not result.unchecked


@pytest.mark.parametrize("name", ["clam.mail", "clam.exe.mbox.base64", "clam.exe.mbox.uu"])
def test_mail_wrappers_as_whole_message(clam_dir: Path, clam_sha256: str, name: str) -> None:
    assert _reached((clam_dir / name).read_bytes(), clam_sha256)


def test_every_testfile_is_accounted_for(clam_dir: Path) -> None:
    present = {p.name for p in clam_dir.iterdir() if p.name != "clam.exe"}
    assert present <= set(CLAIMED) | set(NOT_CLAIMED), present - set(CLAIMED) - set(NOT_CLAIMED)


@pytest.mark.parametrize("name", sorted(NOT_CLAIMED))
def test_unclaimed_wrappers_stay_intact_without_errors(clam_dir: Path, name: str) -> None:
    data = (clam_dir / name).read_bytes()
    with unpack(message((name, data))) as result:
        wrapper = result.parts[2]
        assert wrapper.size == len(data)
        assert "DECODE_FAIL" not in result.symbols()


def test_cache_emax_is_deeper_than_the_depth_limit(clam_dir: Path, clam_sha256: str) -> None:
    from decoders import Limits

    raw = message(("clam_cache_emax.tgz", (clam_dir / "clam_cache_emax.tgz").read_bytes()))
    with unpack(raw) as result:
        assert "DECODE_LIMIT_DEPTH" in result.symbols() and result.unchecked
        assert not any(p.sha256 == clam_sha256 for p in result.parts)
    with unpack(raw, limits=Limits(max_depth=30)) as result:
        assert any(p.sha256 == clam_sha256 for p in result.parts)
        assert not result.unchecked

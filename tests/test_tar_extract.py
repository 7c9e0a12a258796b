"""scanner.testing.tar_extract: the benchmarks' corpus extraction on Pythons with and
without tarfile's extraction filters (Debian 12's python3 is 3.11.2, before PEP 706)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from scanner.testing.tar_extract import extract_data


def _tarball(tmp_path: Path) -> Path:
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("corpus/ham/1", b"ham"), ("corpus/spam/1", b"spam"),
                           ("../escape", b"x"), ("/abs", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("corpus/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    return path


@pytest.mark.parametrize("with_filter", [True, False], ids=["filter", "no-filter"])
def test_only_plain_files_inside_the_destination_are_extracted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_filter: bool) -> None:
    tarball = _tarball(tmp_path)
    if not with_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    dest = tmp_path / "out"
    dest.mkdir()
    with tarfile.open(tarball) as tar:
        if with_filter and hasattr(tarfile, "data_filter"):
            with pytest.raises(tarfile.FilterError):  # PEP 706 refuses the bad members
                extract_data(tar, dest)
            return
        extract_data(tar, dest)
    assert (dest / "corpus/ham/1").read_bytes() == b"ham"
    assert (dest / "corpus/spam/1").read_bytes() == b"spam"
    assert not (tmp_path / "escape").exists() and not (dest / "abs").exists()
    assert not (dest / "corpus/link").exists()

"""Our PKZIP implode decoder: the ClamAV sample decodes exactly; damaged input fails cleanly."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders.base import CorruptPart
from decoders.implode import explode


@pytest.fixture(scope="module")
def imploded(clam_dir: Path) -> tuple[bytes, zipfile.ZipInfo]:
    path = clam_dir / "clam.impl.zip"
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    assert info.compress_type == 6
    nlen, xlen = struct.unpack_from("<HH", raw, info.header_offset + 26)
    start = info.header_offset + 30 + nlen + xlen
    return raw[start : start + info.compress_size], info


def test_explode_reproduces_the_member(
    imploded: tuple[bytes, zipfile.ZipInfo], clam_sha256: str
) -> None:
    import hashlib

    data, info = imploded
    out: list[bytes] = []
    explode(data, info.flag_bits, info.file_size, out.append)
    result = b"".join(out)
    assert len(result) == info.file_size
    assert zlib.crc32(result) == info.CRC
    assert hashlib.sha256(result).hexdigest() == clam_sha256


def test_truncated_input_is_corrupt(imploded: tuple[bytes, zipfile.ZipInfo]) -> None:
    data, info = imploded
    with pytest.raises(CorruptPart):
        explode(data[: len(data) // 2], info.flag_bits, info.file_size, lambda b: None)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutations_never_raise_anything_else(
    imploded: tuple[bytes, zipfile.ZipInfo], data: st.DataObject
) -> None:
    raw, info = imploded
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 6))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    flags = data.draw(st.sampled_from([0, 2, 4, 6]))
    size = data.draw(st.integers(0, 100_000))
    produced = 0

    def emit(chunk: bytes) -> None:
        nonlocal produced
        produced += len(chunk)

    try:
        explode(bytes(buf), flags, size, emit)
    except CorruptPart:
        return
    assert produced == size

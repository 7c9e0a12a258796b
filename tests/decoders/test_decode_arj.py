"""ARJ archives made at test time with Debian's ``arj`` tool, all methods, and garbling."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from decoders import unpack
from decoders.arj import ArjDecoder, _header
from decoders.base import DecodeError, Limits
from decoders.context import DecodeContext
from decoders.part import Part
from tests.decoders.builders import message

TEXT = b"".join(b"line %d of some repetitive text for the arj test\n" % i for i in range(3000))
RANDOM = os.urandom(50_000)


def arj_archive(tmp_path: Path, method: int, *extra: str) -> bytes:
    if shutil.which("arj") is None:
        pytest.skip("Debian package arj is not installed")
    (tmp_path / "text.txt").write_bytes(TEXT)
    (tmp_path / "rand.bin").write_bytes(RANDOM)
    out = tmp_path / f"m{method}.arj"
    subprocess.run(
        ["arj", "a", f"-m{method}", "-y", *extra, out.name, "text.txt", "rand.bin"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


@pytest.mark.parametrize("method", [0, 1, 2, 3, 4])
def test_arj_methods(tmp_path: Path, method: int) -> None:
    with unpack(message(("a.arj", arj_archive(tmp_path, method)))) as result:
        assert result.parts[2].detected_type == "arj"
        got = {p.name: p.data() for p in result.parts[3:]}
        assert got == {"text.txt": TEXT, "rand.bin": RANDOM}
        assert not result.hits


def test_arj_garbled_is_encrypted(tmp_path: Path) -> None:
    with unpack(message(("a.arj", arj_archive(tmp_path, 1, "-gsecret")))) as result:
        assert result.encrypted and result.unchecked
        assert {"text.txt", "rand.bin"} <= set(
            next(h for h in result.hits if h.symbol == "DECODE_ENCRYPTED").options
        )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6))
@example(edits=[(7261, 173)])  # a 29-bit constant position code: ValueError once
def test_damaged_arj_raises_only_decode_errors(edits: list[tuple[int, int]]) -> None:
    raw = bytearray(CACHED)
    for pos, value in edits:
        raw[pos % len(raw)] = value
    ctx = DecodeContext(Limits(), len(raw))
    part = Part(1, (1,), ctx.blob(bytes(raw), counted=False), detected_type="arj")
    try:
        produced = sum(c.blob.size for c in ArjDecoder().decode(part, ctx))
        assert produced <= ctx.quota
    except DecodeError:
        pass


CACHED = (
    Path("/usr/share/clamav-testfiles/clam.arj").read_bytes()
    if Path("/usr/share/clamav-testfiles/clam.arj").is_file()
    else b"`\xea\x00\x00"
)


@pytest.mark.parametrize("ftype", [3, 4, 5])
def test_arj_entry_of_another_type_holding_data_is_decoded(tmp_path: Path, ftype: int) -> None:
    # a directory or label entry that stores data used to be skipped, data unseen
    raw = bytearray(arj_archive(tmp_path, 1))
    _, pos = _header(bytes(raw), 0)  # the main header; the first file header follows
    (size,) = struct.unpack_from("<H", raw, pos + 2)
    raw[pos + 4 + 6] = ftype
    struct.pack_into("<I", raw, pos + 4 + size, zlib.crc32(raw[pos + 4 : pos + 4 + size]))
    with unpack(message(("a.arj", bytes(raw)))) as result:
        got = {p.name: p.data() for p in result.parts[3:]}
        assert got == {"text.txt": TEXT, "rand.bin": RANDOM}

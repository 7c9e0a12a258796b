"""Decompression bombs and hostile nesting stop within the limits, fast and small."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from decoders import Limits, unpack
from decoders.unpack import Unpacked
from tests.decoders.builders import (
    gzip_ratio_bomb,
    lying_zip,
    message,
    nested_rfc822,
    nested_zip_bomb,
    zip_bytes,
)
from tests.decoders.quine import quine_zip

MiB = 1024 * 1024


def measured(raw: bytes, **kw: object) -> tuple[Unpacked, float, int]:
    """Unpack ``raw``; return the result, seconds taken and peak traced memory."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        result = unpack(raw, **kw)  # type: ignore[arg-type]
        elapsed = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, elapsed, peak


@pytest.fixture
def tmp_root(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "spool"
    root.mkdir()
    yield str(root)
    assert not list(root.iterdir()), "private temporary directory left behind"


def assert_bounded(result: Unpacked, elapsed: float, peak: int, raw: bytes) -> None:
    limits = Limits()
    assert elapsed < 2.0, f"took {elapsed:.2f}s"
    assert peak < 200 * MiB, f"peak {peak / MiB:.0f} MiB"
    produced = sum(p.size for p in result.parts[1:])
    assert produced <= limits.quota(len(raw)) + 1024 * 1024  # one decompression step over
    assert len(result.parts) <= limits.max_parts
    assert max(p.depth for p in result.parts) <= limits.max_depth


def test_nested_zip_bomb(tmp_root: str) -> None:
    bomb = nested_zip_bomb(levels=5, fanout=16)  # 16**5 * 4 MiB = 4 TiB when fully unpacked
    raw = message(("42.zip", bomb))
    result, elapsed, peak = measured(raw, tmp_root=tmp_root)
    with result:
        assert_bounded(result, elapsed, peak, raw)
        assert result.unchecked
        assert result.symbols() & {"DECODE_LIMIT_QUOTA", "DECODE_LIMIT_FILES"}


def test_gzip_one_to_a_million(tmp_root: str) -> None:
    bomb = gzip_ratio_bomb()
    assert (256 * MiB) / len(bomb) > 1_000_000
    raw = message(("zeros.gz", bomb))
    result, elapsed, peak = measured(raw, tmp_root=tmp_root)
    with result:
        assert_bounded(result, elapsed, peak, raw)
        assert "DECODE_LIMIT_QUOTA" in result.symbols()
        assert result.unchecked


def test_zip_lying_about_its_size_is_counted_by_real_bytes(tmp_root: str) -> None:
    real = os.urandom(64) * (8 * 1024 * 1024 // 64)  # 8 MiB, header claims 10 bytes
    raw = message(("liar.zip", lying_zip(real, claimed=10)))
    limits = Limits(max_quota=1 * MiB, min_quota=1 * MiB, max_factor=0, min_factor=0)
    with unpack(raw, limits=limits, tmp_root=tmp_root) as result:
        produced = sum(p.size for p in result.parts[3:])
        assert produced <= 1 * MiB + 256 * 1024
        assert result.symbols() & {"DECODE_LIMIT_QUOTA", "DECODE_CORRUPT"}


def test_quine_zip_stops_at_depth(tmp_root: str) -> None:
    quine = quine_zip()
    with zipfile.ZipFile(io.BytesIO(quine)) as zf:
        assert zf.read(zf.namelist()[0]) == quine  # it really contains itself
    raw = message(("r.zip", quine))
    result, elapsed, peak = measured(raw, tmp_root=tmp_root)
    with result:
        assert_bounded(result, elapsed, peak, raw)
        assert "DECODE_LIMIT_DEPTH" in result.symbols()
        assert result.unchecked
        copies = [p for p in result.parts if p.sha256 == result.parts[2].sha256]
        assert len(copies) == Limits().max_depth - 1  # p003 at depth 2 .. depth 14


def test_hundred_deep_rfc822(tmp_root: str) -> None:
    raw = nested_rfc822(100)
    result, elapsed, peak = measured(raw, tmp_root=tmp_root)
    with result:
        assert_bounded(result, elapsed, peak, raw)
        assert "DECODE_LIMIT_DEPTH" in result.symbols()
        assert max(p.depth for p in result.parts) == Limits().max_depth
        assert result.unchecked


def test_shallow_rfc822_is_fully_decoded() -> None:
    with unpack(nested_rfc822(5)) as result:
        assert not result.unchecked
        assert any(p.text == "innermost body\n" for p in result.parts)


def test_max_parts() -> None:
    members = {f"f{i}.txt": b"x" for i in range(50)}
    raw = message(("many.zip", zip_bytes(members)))
    with unpack(raw, limits=Limits(max_parts=20)) as result:
        assert len(result.parts) == 20
        assert "DECODE_LIMIT_FILES" in result.symbols()
        assert result.unchecked


def test_time_budget() -> None:
    raw = message(("a.zip", zip_bytes({"a.txt": b"a" * 1000})))
    with unpack(raw, limits=Limits(time_budget=-1.0)) as result:
        assert "DECODE_LIMIT_TIME" in result.symbols()
        assert result.unchecked


def test_limit_hit_names_the_part() -> None:
    raw = message(("a.zip", zip_bytes({"a.txt": b"a" * 1000})))
    with unpack(raw, limits=Limits(max_depth=2)) as result:
        hit = next(h for h in result.hits if h.symbol == "DECODE_LIMIT_DEPTH")
        assert hit.part is not None and hit.part.startswith("P=p003,L=1/2,")


def test_spooled_parts_live_in_private_dir_removed_on_close(tmp_root: str) -> None:
    big = os.urandom(3 * MiB)
    result = unpack(message(("big.bin", big)), tmp_root=tmp_root)
    part = result.parts[2]
    assert part.spooled_path is not None
    assert Path(part.spooled_path).parent.parent == Path(tmp_root)
    assert part.data() == big
    result.close()
    assert not Path(part.spooled_path).exists()


def test_cleanup_when_caller_raises(tmp_root: str) -> None:
    with (
        pytest.raises(RuntimeError),
        unpack(message(("b.bin", os.urandom(2 * MiB))), tmp_root=tmp_root),
    ):
        raise RuntimeError("caller failed")


BOMBS_IN_A_FRESH_PROCESS = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.decoders.builders import message, nested_zip_bomb, gzip_ratio_bomb
from tests.decoders.quine import quine_zip
from decoders import unpack
for make in (lambda: nested_zip_bomb(5, 16), gzip_ratio_bomb, quine_zip):
    with unpack(message(("bomb.bin", make()))) as result:
        assert result.unchecked
# VmHWM is this program's own peak; ru_maxrss would also count the parent's memory,
# inherited through fork() before exec.
print([ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0])
"""


def test_bombs_keep_process_rss_under_200_mib() -> None:
    # tracemalloc sees Python objects only; the whole process (C libraries included) is
    # measured in a fresh interpreter so other tests' memory does not count.
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", BOMBS_IN_A_FRESH_PROCESS, root],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert int(done.stdout.split()[-1]) < 200 * 1024  # KiB


def _bombs() -> list[tuple[str, Callable[[], bytes]]]:
    return [("zip", lambda: nested_zip_bomb(3, 8)), ("gz", gzip_ratio_bomb)]


@pytest.mark.parametrize(("kind", "make"), _bombs())
def test_bombs_as_root_body_never_raise(kind: str, make: Callable[[], bytes]) -> None:
    raw = b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n" + make()
    with unpack(raw) as result:
        assert result.parts[0].detected_type == "mail"
        assert result.unchecked, kind

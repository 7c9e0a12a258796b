"""read_at_most: the limit, end of file, and more than one chunk."""

from __future__ import annotations

import io

from scanner import bounded
from scanner.bounded import read_at_most


def test_reads_up_to_the_limit_across_chunks(monkeypatch) -> None:
    monkeypatch.setattr(bounded, "CHUNK", 4)
    data = bytes(range(10))
    assert read_at_most(io.BytesIO(data), 100) == data       # end of file first
    assert read_at_most(io.BytesIO(data), 7) == data[:7]     # the limit first
    assert read_at_most(io.BytesIO(data), 0) == b""
    assert read_at_most(io.BytesIO(b""), 5) == b""


def test_a_pipe_that_delivers_little_at_a_time() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self) -> None:
            self.left = 5

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            if not self.left:
                return b""
            self.left -= 1
            return b"ab"[:n]

    assert read_at_most(Trickle(), 7) == b"abababa"  # short reads add up to the limit
    assert read_at_most(Trickle(), 100) == b"ab" * 5

"""Reading the DATA section as it arrives.

The listener (:mod:`scanner.smtp.server`) hands every piece the client sends during
DATA to a :class:`DataReader`, which takes bytes up to and including the end-of-data
line and never more (pipelined commands after it stay with the listener), and enforces
the limits: a line longer than the line limit (counted with its CRLF) gives 500, more
data than the size limit gives 552, both only after the whole section has been read
(RFC 5321 4.2.5). The content is un-stuffed once, at the end.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

_TAIL = b".\r\n"
_END = b"\r\n.\r\n"


class DataState(enum.Enum):
    """How reading the DATA section ended."""

    OK = "ok"
    TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
    TOO_MUCH = "552 Error: Too much mail data"


@dataclass
class _LineMeter:
    """Finds a line longer than ``limit`` bytes (CRLF included) across chunks."""

    limit: int
    run: int = 0  # bytes of the current, unfinished line
    pending_cr: bool = False  # the previous chunk ended with CR

    def too_long(self, chunk: bytes) -> bool:
        start = 0
        if self.pending_cr and chunk.startswith(b"\n"):  # a CRLF split between chunks
            if self.run + 1 > self.limit:
                return True
            self.run, start = 0, 1
        last = chunk.rfind(b"\r\n", start)
        if last >= 0:
            if self.run + last + 2 - start > self.limit and self._scan(chunk, start, last):
                return True
            self.run, start = 0, last + 2
        self.run += len(chunk) - start
        self.pending_cr = chunk.endswith(b"\r")
        return self.run > self.limit

    def _scan(self, chunk: bytes, start: int, last: int) -> bool:
        """Check each complete line in ``chunk[start:last + 2]`` (the slow path)."""
        run = self.run
        while start <= last:
            end = chunk.find(b"\r\n", start)
            if run + end + 2 - start > self.limit:
                return True
            run, start = 0, end + 2
        return False


class DataReader:
    """One DATA section, fed in the pieces the client's bytes arrive in."""

    def __init__(self, *, line_limit: int, size_limit: int | None) -> None:
        self.state = DataState.OK
        self.done = False
        self._meter = _LineMeter(line_limit)
        self._size_limit = size_limit
        self._size = 0
        self._content = bytearray()  # stuffed, with the end-of-data line once found
        # the last (up to) four bytes taken, after a virtual CRLF before the first: the
        # end-of-data line is the first ".\r\n" that starts a line
        self._tail = b"\r\n"

    def feed(self, data: bytes | bytearray) -> int:
        """Take ``data`` up to the end of the section; return how many bytes were taken
        (all of them unless the end was found: then :attr:`done` is set)."""
        # an end-of-data line across the boundary with what came before ends within
        # data's first four bytes; any other one lies wholly in data, after it
        across = (self._tail + bytes(data[:4])).find(_END)
        if across >= 0:
            end = across + len(_END) - len(self._tail)
        else:
            inside = data.find(_END)
            end = inside + len(_END) if inside >= 0 else -1
        if end < 0:
            self._take(data)
            return len(data)
        self._take(data[:end])
        self.done = True
        return end

    def _take(self, piece: bytes | bytearray) -> None:
        if not piece:
            return
        self._size += len(piece)
        state = self.state
        if state is DataState.OK and self._meter.too_long(piece):
            state = DataState.TOO_LONG
        if state is DataState.OK and self._size_limit and \
                self._size - len(_TAIL) > self._size_limit:
            state = DataState.TOO_MUCH
        self.state = state
        if state is DataState.OK:
            self._content += piece
        self._tail = (self._tail + bytes(piece[-4:]))[-4:]

    def content(self) -> bytes:
        """The un-stuffed content (``b""`` unless the state is OK); after :attr:`done`."""
        if self.state is not DataState.OK:
            return b""
        with memoryview(self._content) as view:  # one copy into bytes, not two
            content = bytes(view[:-len(_TAIL)])
        self._content = bytearray()  # before un-stuffing, which may copy once more
        return unstuff(content)


def unstuff(data: bytes) -> bytes:
    """RFC 5321 4.5.2: remove the first character of every line that starts with a dot."""
    if b"\r\n." not in data and not data.startswith(b"."):
        return data
    if data.startswith(b"."):
        data = data[1:]
    return data.replace(b"\r\n.", b"\r\n")

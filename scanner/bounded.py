"""Read at most N bytes of a file or pipe without reserving N bytes first.

``BufferedReader.read(n)`` allocates ``n`` bytes before it reads and shrinks the result
afterwards. With a limit of 64 MiB that is 64 MiB of address space for a 5 KB message:
harmless on a server, fatal under an address-space limit such as Dovecot's default
``vsz_limit`` of 256 MB for the ``scanner learn`` its Junk hook runs.
"""

from __future__ import annotations

import errno
import io
import os
import select
import stat
import sys
from typing import Any, BinaryIO

CHUNK = 1 << 20


def read_at_most(stream: BinaryIO, limit: int) -> bytes:
    """Up to ``limit`` bytes (fewer at end of file), read in chunks of at most 1 MiB."""
    parts: list[bytes] = []
    left = limit
    while left > 0:
        data = stream.read(min(CHUNK, left))
        if not data:
            break
        parts.append(data)
        left -= len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_stdin_at_most(limit: int) -> bytes:
    """Standard input as :func:`read_at_most` reads it. A closed standard input (a hook
    started with ``<&-``: Python then has no ``sys.stdin``) is an ``OSError`` like any
    unreadable file, for the caller to report, not an ``AttributeError``."""
    if sys.stdin is None:
        raise OSError(errno.EBADF, "standard input is closed")
    return read_at_most(sys.stdin.buffer, limit)


class _NoWaitFile(io.FileIO):
    """A file opened non-blocking whose reads raise instead of returning None when no
    data is there."""

    def readinto(self, buffer: Any) -> int:
        count = super().readinto(buffer)
        if count is None:
            raise _would_wait()
        return count

    def readall(self) -> bytes:
        data = super().readall()
        if data is None:
            raise _would_wait()
        return data


def _would_wait() -> BlockingIOError:
    return BlockingIOError(errno.EAGAIN, "it has no data to read without waiting "
                           "(a file of /proc or /sys, a terminal?)")


FIFO_WAIT = 30.0


def open_without_waiting(name: str, fifo_wait: float | None = None) -> BinaryIO:
    """Open a file for reading so that neither the open nor a read waits for ever for
    data that may never come. A regular file of /proc can block a read for ever
    (``/proc/kmsg`` waits for the kernel to log something): its reads raise
    ``BlockingIOError``. A FIFO (a plain open waits for a writer for ever) is opened at
    once and read as a pipe once a process has written to it or closed it
    (``<(zcat msg.gz)``, ``mkfifo``); after ``fifo_wait`` seconds without either it is
    an ``OSError`` (ETIMEDOUT); default :data:`FIFO_WAIT`."""
    if fifo_wait is None:
        fifo_wait = FIFO_WAIT
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(int(fifo_wait * 1000)):
                raise OSError(errno.ETIMEDOUT, f"a pipe no process wrote to within "
                              f"{fifo_wait:g} s")
            os.set_blocking(fd, True)
        raw = _NoWaitFile(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return io.BufferedReader(raw)

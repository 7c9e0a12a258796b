"""Read at most N bytes of a file or pipe without reserving N bytes first.

``BufferedReader.read(n)`` allocates ``n`` bytes before it reads and shrinks the result
afterwards. With a limit of 64 MiB that is 64 MiB of address space for a 5 KB message:
harmless on a server, fatal under an address-space limit such as Dovecot's default
``vsz_limit`` of 256 MB for the ``scanner learn`` its Junk hook runs.
"""

from __future__ import annotations

import errno
import sys
from typing import BinaryIO

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

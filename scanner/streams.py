"""What an ``asyncio.StreamReader`` has received but nobody has read yet.

asyncio offers no public peek. Three places need one: the kept-open connections of the
reinjection and clamd clients (did the other side say something, or hang up, while the
connection was idle?), the clamd client (what arrived before a reset?) and the
reinjection client (is the next reply already here, so that reading it cannot wait and
needs no timer?). They all read the reader's private ``_buffer`` here, so a Python
change has one place to fix; without the attribute the answer is "nothing buffered".
"""

from __future__ import annotations

import asyncio


def buffered(reader: asyncio.StreamReader) -> bytes:
    """A copy of the bytes received and not yet read (``b""`` if none or unknown)."""
    return bytes(getattr(reader, "_buffer", b""))


def has_line(reader: asyncio.StreamReader) -> bool:
    """Whether a whole line is buffered: ``readline()`` then returns without waiting."""
    return b"\n" in getattr(reader, "_buffer", b"")


def idle_and_open(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """May an idle kept-open connection be used again? Not if either side closed it, or
    the peer sent something nobody asked for (a parting reply, or junk that would be read
    as the answer to the next request)."""
    return not (reader.at_eof() or writer.is_closing() or buffered(reader))

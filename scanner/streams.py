"""What an ``asyncio.StreamReader`` has received but nobody has read yet.

asyncio offers no public peek. Three places need one: the SMTP listener (are more
pipelined commands waiting?), the reinjection client (did the next hop say something
between transactions?) and the clamd client (what arrived before a reset?). They all
read the reader's private ``_buffer`` here, so a Python change has one place to fix;
without the attribute the answer is "nothing buffered".
"""

from __future__ import annotations

import asyncio


def buffered(reader: asyncio.StreamReader) -> bytes:
    """A copy of the bytes received and not yet read (``b""`` if none or unknown)."""
    return bytes(getattr(reader, "_buffer", b""))

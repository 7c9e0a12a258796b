"""One clamd request on a connection of its own, over a plain non-blocking socket.

Why not asyncio streams here: clamd answers ``INSTREAM size limit exceeded. ERROR`` and
closes the connection while we are still sending. On a stream transport the first
write that fails closes the socket at once, and clamd's answer, already waiting in the
kernel, is never read: with a private clamd whose StreamMaxLength was 64 KiB, 67 of 100
two-megabyte messages over its Unix socket (30 of 100 over TCP) ended as "connection
lost while sending" (CLAMAV_FAIL, a tempfail that comes back on every retry) instead
of "size limit exceeded" (UNCHECKED). A plain socket stays open after a failed send,
so what clamd said before it closed is still read, to the end.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanner.checks.clamd_client import Endpoint

MAX_REPLY = 64 * 1024
"""Longest reply we read; anything longer is not clamd talking."""


class ReplyTooLong(Exception):
    """clamd (or whatever answers) sent more than :data:`MAX_REPLY` bytes."""


async def open_socket(endpoint: Endpoint) -> socket.socket:
    """A connected non-blocking socket to ``endpoint``; OSError when none connects
    (TCP: every address the host name resolves to is tried in turn)."""
    loop = asyncio.get_running_loop()
    if endpoint.kind == "unix":
        targets: list[tuple[int, object]] = [(socket.AF_UNIX, endpoint.address)]
    else:
        infos = await loop.getaddrinfo(endpoint.address, endpoint.port,
                                       type=socket.SOCK_STREAM)
        targets = [(family, address) for family, _, _, _, address in infos]
    error: OSError = OSError(f"{endpoint}: no address")
    for family, address in targets:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error


async def exchange(sock: socket.socket, pieces: Sequence[bytes | memoryview]
                   ) -> tuple[bytes, str]:
    """Send ``pieces`` while reading; return clamd's reply (all it sent until it closed
    the connection) and why sending stopped early ("" when everything went out)."""
    reading = asyncio.ensure_future(read_all(sock))
    try:
        send_error = await _send(sock, pieces, reading)
        return await reading, send_error
    finally:
        if reading.done() and not reading.cancelled():
            reading.exception()  # retrieved; re-raised above if it matters
        reading.cancel()


async def _send(sock: socket.socket, pieces: Sequence[bytes | memoryview],
                reading: asyncio.Future[bytes]) -> str:
    loop = asyncio.get_running_loop()
    try:
        for piece in pieces:
            if reading.done():  # clamd answered (and closed) already: stop writing
                return "clamd answered before the end of the stream"
            await loop.sock_sendall(sock, piece)
    except OSError as exc:  # reset or broken pipe: the socket stays open for reading
        return exc.strerror or str(exc) or type(exc).__name__
    return ""


async def read_all(sock: socket.socket) -> bytes:
    """Everything until clamd closes; a reset after an answer keeps the answer."""
    loop = asyncio.get_running_loop()
    reply = b""
    while len(reply) <= MAX_REPLY:
        try:
            chunk = await loop.sock_recv(sock, 4096)
        except ConnectionError:
            break
        if not chunk:
            break
        reply += chunk
    if len(reply) > MAX_REPLY:
        raise ReplyTooLong(f"reply longer than {MAX_REPLY} bytes")
    return reply

"""One UDP socket per event loop for a resolver on the loopback interface.

:func:`scanner.dns.stub.udp_exchange` opens a socket for each query, so that each query
leaves from a port the kernel picks at random (RFC 5452: with the 16-bit query id, what
makes an off-path forgery hard). Opening, connecting, registering with the event loop
and closing that socket is most of a query's transport cost: 64 us of CPU per query
that way against 24 us over one kept socket, and 89 against 39 us for a whole query
through the client (``bench/auth/dns_transport.py``, medians of three rounds of 6,000
queries, 9 at once; the DNS checks ask about 9 per corpus message).

For a resolver on the loopback interface (127.0.0.0/8, ::1: the local caching resolver
the README recommends) the random port protects nothing: no host but this one can send
a datagram from a loopback address (the kernel drops such packets arriving from
outside), so a forger would already be on the machine. For such a resolver the client
uses one connected socket per resolver and event loop: :class:`SharedUdp`, which
multiplexes the queries in flight by their ids (a query whose random id is already in
flight is sent under a fresh one, and its reply handed back under the caller's id).
Every other resolver keeps a socket of its own per query.

A reply is handed to the query it answers only if it passes the same test as on a
socket of its own (:func:`scanner.dns.stub.answers_question`: id, QR, opcode, the
question); anything else is dropped. An ICMP "port unreachable" (the resolver is not
running) fails every query in flight on that socket with ``ConnectionRefusedError``, as
it fails the one query of a socket of its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import socket
import struct

from scanner.dns.reverse import unmapped
from scanner.dns.stub import answers_question

_RECV_SIZE = 65535


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x)."""
    try:
        return ipaddress.ip_address(unmapped(host)).is_loopback
    except ValueError:
        return False


class SharedUdp:
    """A connected UDP socket to one resolver, read by the event loop it was made in."""

    def __init__(self, server: tuple[str, int], loop: asyncio.AbstractEventLoop) -> None:
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        self.loop = loop
        self.pid = os.getpid()
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.setblocking(False)
            self._sock.connect(server)  # UDP: no packet sent; the kernel filters sources
            loop.add_reader(self._sock.fileno(), self._readable)
        except BaseException:
            self._sock.close()
            raise
        self._waiting: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    async def exchange(self, query: bytes, timeout: float) -> bytes | None:
        """Send ``query``; the reply that answers it (its id set back to ``query``'s), or
        None after ``timeout``. OSError (the resolver unreachable) propagates."""
        qid = query[0] << 8 | query[1]
        sent = query
        while qid in self._waiting:
            qid = secrets.randbits(16)
            sent = struct.pack("!H", qid) + query[2:]
        future: asyncio.Future[bytes] = self.loop.create_future()
        self._waiting[qid] = (sent, future)
        try:
            self._sock.send(sent)
            async with asyncio.timeout(timeout):
                reply = await future
        except TimeoutError:
            return None
        finally:
            del self._waiting[qid]
        return reply if sent is query else query[:2] + reply[2:]

    def _readable(self) -> None:
        """Hand every datagram waiting on the socket to the query it answers."""
        while True:
            try:
                reply = self._sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP unreachable: the resolver is not there
                self._fail(exc)
                return
            if len(reply) < 2:
                continue
            entry = self._waiting.get(reply[0] << 8 | reply[1])
            if entry is None:
                continue  # late, forged or garbage
            sent, future = entry
            if not future.done() and answers_question(sent, reply) is not None:
                future.set_result(reply)

    def _fail(self, exc: OSError) -> None:
        for _sent, future in self._waiting.values():
            if not future.done():
                future.set_exception(type(exc)(exc.errno, exc.strerror))

    def close(self) -> None:
        """Stop reading and close the socket. The event loop is touched only if it is
        this process's and still open (after a fork, the loop's selector belongs to the
        parent)."""
        if self.pid == os.getpid() and not self.loop.is_closed():
            self.loop.remove_reader(self._sock.fileno())
        self._sock.close()


class SharedSockets:
    """The :class:`SharedUdp` of each loopback resolver, per event loop. A worker has one
    loop; tests run several, one after another or in threads, so each live loop keeps
    its own sockets, those of closed loops are closed on the next use, and a forked
    process starts afresh (its parent's sockets closed in it, its parent's loops
    untouched)."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._sockets: dict[tuple[asyncio.AbstractEventLoop, tuple[str, int]], SharedUdp] = {}

    def get(self, server: tuple[str, int]) -> SharedUdp:
        """The shared socket to ``server`` for the running loop (made on first use)."""
        loop = asyncio.get_running_loop()
        shared = self._sockets.get((loop, server))
        if shared is not None and self._pid == os.getpid():
            return shared
        if self._pid != os.getpid():
            self.close()
            self._pid = os.getpid()
        for key in [key for key in self._sockets if key[0].is_closed()]:
            self._sockets.pop(key).close()
        shared = self._sockets[(loop, server)] = SharedUdp(server, loop)
        return shared

    def close(self) -> None:
        """Close every shared socket."""
        for shared in self._sockets.values():
            shared.close()
        self._sockets = {}

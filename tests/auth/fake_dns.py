"""A scripted UDP DNS responder for the answers a real server cannot be made to give
(a wrong id or question, garbage, a truncated answer with no TCP behind it, a slow one).

:class:`FakeResolver` binds a UDP socket on 127.0.0.1 and, in a thread, hands every
query it receives to ``script(query_wire) -> list of datagrams``, sending each back in
order (after ``delay`` seconds: a slow server). With ``forged``, the datagrams that
script makes are sent first, from another socket (``forge_from``: another address or
port), as an off-path forger would. Nothing listens on TCP at its port unless
``silent_tcp``: then a TCP socket accepts connections and never answers. Unit
tests only: integration tests use NSD (:mod:`scanner.testing.dns_server`).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from types import TracebackType

import dns.message
import dns.name
import dns.rcode
import dns.rrset

Script = Callable[[bytes], list[bytes]]


class FakeResolver:
    """Answers queries on a loopback UDP port as ``script`` says; counts them."""

    def __init__(self, script: Script, delay: float = 0.0, silent_tcp: bool = False,
                 forged: Script | None = None, forge_from: str = "127.0.0.1") -> None:
        self._script = script
        self._delay = delay
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._forged = forged
        self._forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # another address may use our port; our own address needs another port
        self._forger.bind((forge_from, self.port if forge_from != "127.0.0.1" else 0))
        self._tcp: socket.socket | None = None
        if silent_tcp:  # the kernel completes the handshakes; nobody ever reads
            self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._tcp.bind(("127.0.0.1", self.port))
            self._tcp.listen(16)
        self._sock.settimeout(0.1)  # how often the thread sees a stop request
        self._stop = threading.Event()
        self.queries: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.queries.append(wire)
            if self._delay:
                self._stop.wait(self._delay)  # a slow server (not synchronisation)
            for datagram in self._forged(wire) if self._forged else ():
                self._forger.sendto(datagram, peer)
            for datagram in self._script(wire):
                self._sock.sendto(datagram, peer)

    def __enter__(self) -> FakeResolver:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
        self._forger.close()
        if self._tcp is not None:
            self._tcp.close()


def answer(wire: bytes, *addresses: str, rcode: int = dns.rcode.NOERROR, ttl: int = 300,
           name: str | None = None, flags: int = 0) -> bytes:
    """A response to the query ``wire``: A records for ``addresses`` (owned by ``name``,
    default the question's), the given rcode, extra header ``flags`` (e.g. TC)."""
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    if name is not None:
        response.question[0].name = dns.name.from_text(name)
    owner = response.question[0].name
    if addresses:
        response.answer.append(dns.rrset.from_text(owner, ttl, "IN", "A", *addresses))
    response.set_rcode(rcode)
    response.flags |= flags
    return response.to_wire()

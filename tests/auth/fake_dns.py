"""A scripted UDP DNS responder for the answers a real server cannot be made to give
(a wrong id or question, garbage, a truncated answer with no TCP behind it, a slow one).

:class:`FakeResolver` binds a UDP socket on 127.0.0.1 and, in a thread, hands every
query it receives to ``script(query_wire) -> list of datagrams``, sending each back in
order (after ``delay`` seconds: a slow server). With ``forged``, the datagrams that
script makes are sent first, from another socket (``forge_from``: another address or
port), as an off-path forger would. Nothing listens on TCP at its port unless
``silent_tcp`` (a TCP socket accepts connections and never answers) or ``tcp_script``
(it answers each query of each connection as that script says; the queries are
counted in ``tcp_queries``). Unit
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
                 forged: Script | None = None, forge_from: str = "127.0.0.1",
                 tcp_script: Script | None = None) -> None:
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
        self._tcp_script = tcp_script
        if silent_tcp or tcp_script:  # silent: the kernel completes the handshakes
            self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._tcp.bind(("127.0.0.1", self.port))
            self._tcp.listen(16)
            self._tcp.settimeout(0.1)
        self._sock.settimeout(0.1)  # how often the thread sees a stop request
        self._stop = threading.Event()
        self.queries: list[bytes] = []
        self.tcp_queries: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._tcp_thread = threading.Thread(target=self._serve_tcp, daemon=True)

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

    def _serve_tcp(self) -> None:
        assert self._tcp is not None and self._tcp_script is not None
        while not self._stop.is_set():
            try:
                conn, _peer = self._tcp.accept()
            except TimeoutError:
                continue
            with conn, conn.makefile("rb") as stream:
                while (head := stream.read(2)) and len(head) == 2:
                    wire = stream.read(int.from_bytes(head, "big"))
                    self.tcp_queries.append(wire)
                    for message in self._tcp_script(wire):
                        conn.sendall(len(message).to_bytes(2, "big") + message)

    def __enter__(self) -> FakeResolver:
        self._thread.start()
        if self._tcp_script is not None:
            self._tcp_thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(2)
        if self._tcp_thread.is_alive():
            self._tcp_thread.join(2)
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

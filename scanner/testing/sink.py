"""A scriptable next hop for unit tests: records what it receives, answers as told.

It runs our own listener class (so it understands DSN parameters and XFORWARD) in a
background thread. ``rcpt_reply``/``data_reply`` decide the answers; ``delay``
stalls DATA to simulate a hanging next hop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scanner.smtp.server import FilterLMTP, FilterSMTP


@dataclass
class Received:
    """One transaction the sink accepted."""

    sender: str
    recipients: list[str]
    mail_params: list
    rcpt_params: list
    xforward: dict
    data: bytes


@dataclass
class SinkBehaviour:
    """How the sink answers. Callables get the recipient address."""

    rcpt_reply: Callable[[str], str] = lambda rcpt: "250 2.1.5 Ok"
    data_reply: Callable[[str], str] = lambda rcpt: "250 2.0.0 Ok: queued as SINK1"
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)


class _Handler:
    def __init__(self, behaviour: SinkBehaviour, lmtp: bool) -> None:
        self.b = behaviour
        self.lmtp = lmtp

    def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                    responses: list[str]) -> list[str]:
        session.host_name = hostname
        lines = [responses[0], "250-PIPELINING", "250-SIZE 1000000000", "250-8BITMIME",
                 "250-SMTPUTF8", "250-ENHANCEDSTATUSCODES", "250-DSN",
                 "250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE"]
        return lines

    def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                    params: list) -> str:
        return self.b.rcpt_reply(address)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.b.delay:
            await asyncio.sleep(self.b.delay)
        replies = [self.b.data_reply(r) for r in envelope.rcpt_tos]
        if any(r.startswith("2") for r in replies):
            self.b.received.append(Received(
                envelope.mail_from, list(envelope.rcpt_tos), list(envelope.mail_params),
                [list(p) for p in envelope.rcpt_params], dict(session.xforward),
                bytes(envelope.original_content)))
        return "\r\n".join(replies) if self.lmtp else replies[0]


class Sink:
    """A next hop on 127.0.0.1:port in a background thread."""

    def __init__(self, port: int, lmtp: bool = False) -> None:
        self.port = port
        self.behaviour = SinkBehaviour()
        self._lmtp = lmtp
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.connections: list[FilterSMTP] = []

    @property
    def received(self) -> list[Received]:
        return self.behaviour.received

    def start(self) -> Sink:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(10)
        return self

    async def _start(self) -> None:
        handler = _Handler(self.behaviour, self._lmtp)
        cls = FilterLMTP if self._lmtp else FilterSMTP
        nets = (ipaddress.ip_network("127.0.0.0/8"),)

        def factory() -> FilterSMTP:
            proto = cls(handler, max_line_length=1 << 20, xforward_networks=nets,
                        hostname="sink.test", loop=self._loop)
            self.connections.append(proto)
            return proto

        self._server = await self._loop.create_server(factory, "127.0.0.1", self.port)

    def stop(self) -> None:
        async def _close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(_close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def drop_connections(self) -> None:
        """Close every open connection from the server side (an idle-timeout)."""
        def _drop() -> None:
            for proto in self.connections:
                if proto.transport is not None:
                    proto.transport.close()

        self._loop.call_soon_threadsafe(_drop)
        time.sleep(0.2)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received)

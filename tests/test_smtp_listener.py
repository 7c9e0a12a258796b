"""The listener's protocol object driven directly: what it writes for what arrives, and
when it stops reading (unit tests with a recording transport; the same listener over
real sockets is in test_spine.py, test_smtp_fuzz.py and the Postfix tests)."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from scanner.smtp.server import FilterLMTP, FilterSMTP

_BATCH = (b"XFORWARD NAME=mx.example.org ADDR=192.0.2.7 PORT=4567\r\n"
          b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\nRCPT TO:<b@example.test>\r\n"
          b"RCPT TO:<c@example.test> NOTIFY=NEVER\r\nDATA\r\n")


class Transport(asyncio.Transport):
    """Records every write; tells whether reading is paused; closes when told."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "a write after close"
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 10024)
                }.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        assert self.reading
        self.reading = False

    def resume_reading(self) -> None:
        assert not self.reading
        self.reading = True

    def text(self) -> str:
        return b"".join(self.writes).decode()


class Handler:
    """Answers RCPT at once; DATA waits until the test releases it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.scans: list[bytes] = []
        self.cancelled = False

    def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                    responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [responses[0], "250-PIPELINING", "250 XFORWARD NAME ADDR PORT"]

    def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                    params: list) -> str:
        return "550 5.1.1 unknown" if address.startswith("x") else "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.scans.append(envelope.original_content)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        n = len(envelope.rcpt_tos) if isinstance(server, FilterLMTP) else 1
        return "\r\n".join(["250 2.0.0 Ok: queued as ABC"] * n)


def _listener(cls: type = FilterSMTP, line_limit: int = 2000
              ) -> tuple[FilterSMTP, Transport, Handler]:
    handler = Handler()
    proto = cls(handler, max_line_length=line_limit, hostname="filter.test",
                xforward_networks=(ipaddress.ip_network("127.0.0.0/8"),),
                data_size_limit=100000, timeout=300)
    transport = Transport()
    proto.connection_made(transport)
    return proto, transport, handler


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_pipelined_group_is_answered_in_one_write_in_order() -> None:
    async def run() -> None:
        proto, transport, handler = _listener()
        proto.data_received(b"EHLO postfix.test\r\n")
        transport.writes.clear()
        proto.data_received(_BATCH)
        assert len(transport.writes) == 1
        assert transport.text() == ("250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                                    "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
        transport.writes.clear()
        proto.data_received(b"Subject: x\r\n\r\n..dot\r\n.\r\n")
        await _settle()
        assert handler.scans == [b"Subject: x\r\n\r\n.dot\r\n"]
        assert transport.writes == []  # nothing before the scan's answer
        handler.release.set()
        await _settle()
        assert transport.text() == "250 2.0.0 Ok: queued as ABC\r\n"
        assert proto.envelope.mail_from is None and proto.session.xforward == {}
    asyncio.run(run())


def test_commands_sent_during_a_scan_wait_for_its_answer() -> None:
    """A client that pipelines past the end of DATA gets the final reply first, then
    the answers to what it sent meanwhile; reading stops while that backlog is larger
    than a line may be."""
    async def run() -> None:
        proto, transport, handler = _listener(line_limit=1002)
        proto.data_received(b"EHLO postfix.test\r\n" + _BATCH + b"body\r\n.\r\n")
        await _settle()
        assert len(handler.scans) == 1
        transport.writes.clear()
        proto.data_received(b"NOOP\r\nRSET\r\n")
        assert transport.writes == [] and transport.reading
        proto.data_received(b"NOOP " + b"x" * 990 + b"\r\n")
        assert not transport.reading  # more than a line's worth waiting: stop reading
        handler.release.set()
        await _settle()
        assert transport.reading
        assert transport.text() == ("250 2.0.0 Ok: queued as ABC\r\n250 2.0.0 OK\r\n"
                                    "250 2.0.0 OK\r\n250 2.0.0 OK\r\n")
    asyncio.run(run())


def test_a_client_that_does_not_read_is_not_read_either() -> None:
    async def run() -> None:
        proto, transport, _ = _listener()
        proto.pause_writing()  # the transport's buffer is over its high-water mark
        assert not transport.reading
        proto.resume_writing()
        assert transport.reading
    asyncio.run(run())


@pytest.mark.parametrize("how", ["lost", "eof"])
def test_a_client_gone_during_the_scan_cancels_it(how: str) -> None:
    async def run() -> None:
        proto, transport, handler = _listener()
        proto.data_received(b"EHLO postfix.test\r\n" + _BATCH + b"body\r\n.\r\n")
        await _settle()
        assert handler.scans and not handler.cancelled
        if how == "lost":
            proto.connection_lost(ConnectionResetError())
        else:
            assert proto.eof_received() is False  # the transport closes itself
            proto.connection_lost(None)
        await _settle()
        assert handler.cancelled
        assert proto.session_task is not None and proto.session_task.done()
    asyncio.run(run())


def test_an_overlong_command_line_in_many_pieces_gets_one_500() -> None:
    async def run() -> None:
        proto, transport, _ = _listener(line_limit=1002)
        proto.data_received(b"EHLO postfix.test\r\n")
        transport.writes.clear()
        proto.data_received(b"NOOP ")
        for _ in range(50):
            proto.data_received(b"y" * 700)
        proto.data_received(b"y\r\nNOOP\r\n")
        assert transport.text() == "500 5.5.2 Command line too long\r\n250 2.0.0 OK\r\n"
        assert len(proto._buffer) == 0
    asyncio.run(run())


def test_lmtp_answers_data_once_per_accepted_recipient() -> None:
    async def run() -> None:
        proto, transport, handler = _listener(FilterLMTP)
        proto.data_received(b"LHLO postfix.test\r\nMAIL FROM:<a@example.org>\r\n"
                            b"RCPT TO:<b@example.test>\r\nRCPT TO:<x@example.test>\r\n"
                            b"RCPT TO:<c@example.test>\r\nDATA\r\nbody\r\n.\r\n")
        handler.release.set()
        await _settle()
        assert transport.text().endswith("354 End data with <CR><LF>.<CR><LF>\r\n"
                                          "250 2.0.0 Ok: queued as ABC\r\n"
                                          "250 2.0.0 Ok: queued as ABC\r\n")
    asyncio.run(run())


def test_quit_closes_after_its_reply_and_nothing_after_it_is_read() -> None:
    async def run() -> None:
        proto, transport, _ = _listener()
        proto.data_received(b"EHLO postfix.test\r\nQUIT\r\nNOOP\r\n")
        assert transport.closed
        assert transport.text().endswith("250 XFORWARD NAME ADDR PORT\r\n221 2.0.0 Bye\r\n")
    asyncio.run(run())


def test_a_command_line_trickled_in_byte_by_byte() -> None:
    """A line that arrives a byte at a time is answered once, at its end; one longer
    than the line limit is dropped as it grows (nothing kept beyond the limit)."""
    async def run() -> None:
        proto, transport, _ = _listener(line_limit=1002)
        proto.data_received(b"EHLO postfix.test\r\n")
        transport.writes.clear()
        for byte in b"NOOP hello\r\n":
            proto.data_received(bytes([byte]))
        assert transport.text() == "250 2.0.0 OK\r\n"
        transport.writes.clear()
        for _ in range(3000):
            proto.data_received(b"z")
            assert len(proto._buffer) <= 1003
        proto.data_received(b"\r\nNOOP\r\n")
        assert transport.text() == "500 5.5.2 Command line too long\r\n250 2.0.0 OK\r\n"
    asyncio.run(run())

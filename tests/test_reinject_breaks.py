"""A next hop that goes away at every point of a transaction: each recipient still gets
a reply Postfix can act on (2xx only when the content reached the next hop, never a
5xx the next hop did not send), over SMTP and LMTP, with and without PIPELINING and
CHUNKING, closing silently or with a 421 first."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import pytest

from scanner.reinject.deliver import NextHop, Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.task import ClientInfo, Recipient


@dataclass
class Breaking:
    """A next hop that answers everything with success until its ``cut``-th command
    line, then closes (after a ``421`` when ``say_421``)."""

    lmtp: bool
    pipelining: bool
    chunking: bool
    say_421: bool
    cut: int
    contents: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hop ESMTP\r\n")
        seen = accepted = 0
        while line := await reader.readline():
            seen += 1
            verb = line.split(b" ", 1)[0].strip().upper()
            if seen == self.cut:
                if self.say_421:
                    writer.write(b"421 4.3.2 Service shutting down\r\n")
                break
            if verb in (b"EHLO", b"LHLO"):
                ext = [b"hop", b"XFORWARD NAME ADDR"]
                ext += [b"PIPELINING"] * self.pipelining + [b"CHUNKING"] * self.chunking
                writer.write(b"".join(b"250-" + e + b"\r\n" for e in ext[:-1])
                             + b"250 " + ext[-1] + b"\r\n")
            elif verb == b"RCPT":
                accepted += 1
                writer.write(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                while (chunk := await reader.readline()) != b".\r\n":
                    if not chunk:
                        return
                self._took(writer, accepted if self.lmtp else 1)
            elif verb == b"BDAT":
                await reader.readexactly(int(line.split()[1]))
                self._took(writer, 1)
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                break
            else:  # XFORWARD, MAIL, RSET
                accepted = 0 if verb == b"MAIL" else accepted
                writer.write(b"250 2.0.0 Ok\r\n")
            await writer.drain()
        writer.close()

    def _took(self, writer: asyncio.StreamWriter, replies: int) -> None:
        self.contents += 1
        writer.write(b"250 2.0.0 Ok: queued as Q\r\n" * replies)


def _deliver(hop_script: Breaking, rcpts: int, all_or_nothing: bool) -> list[str]:
    async def main() -> list[str]:
        server = await asyncio.start_server(hop_script.serve, "127.0.0.1", 0)
        hop = NextHop("127.0.0.1", server.sockets[0].getsockname()[1], hop_script.lmtp, 2,
                      2, "scanner.test", True, hop_script.chunking)
        pool = ConnectionPool(hop)
        try:
            return (await deliver(pool, Outgoing(
                "a@example.org", [Recipient(f"r{i}@example.test") for i in range(rcpts)],
                (), b"Subject: t\r\n\r\nbody\r\n", ClientInfo(addr="192.0.2.1")),
                all_or_nothing=all_or_nothing)).replies
        finally:
            await pool.close()
            server.close()
            await server.wait_closed()
    return asyncio.run(main())


@pytest.mark.parametrize(("lmtp", "pipelining", "chunking", "say_421"),
                         list(itertools.product([False, True], repeat=4)))
def test_every_recipient_gets_a_usable_reply_wherever_the_next_hop_goes_away(
        lmtp: bool, pipelining: bool, chunking: bool, say_421: bool):
    for cut, rcpts, all_or_nothing in itertools.product(range(1, 10), (1, 3), (True, False)):
        hop = Breaking(lmtp, pipelining, chunking, say_421, cut)
        replies = _deliver(hop, rcpts, all_or_nothing)
        where = f"cut={cut} rcpts={rcpts} all_or_nothing={all_or_nothing}: {replies}"
        assert len(replies) == rcpts and all(r[:1] in ("2", "4") for r in replies), where
        if any(r.startswith("2") for r in replies):
            assert hop.contents == 1, where

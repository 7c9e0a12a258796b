"""Reinjection with BDAT (CHUNKING, RFC 3030): commands and content in one batch.

The unit tests talk to a small scripted next hop that records every octet it receives;
the last test sends through a real Postfix reinjection smtpd and reads its log.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from scanner.reinject.deliver import NextHop, Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.task import ClientInfo, Recipient
from scanner.testing.postfix import PostfixInstance, free_port, make_base_dir
from tests.postfix_stack import require_postfix

CONTENT = b"Subject: t\r\n\r\n.starts with a dot\r\nlast line without CRLF"


@dataclass
class Script:
    """How the scripted next hop answers, and what it saw."""

    lmtp: bool = False
    chunking: bool = True
    rcpt: dict[str, str] = field(default_factory=dict)  # address -> reply (default 250)
    xforward_reply: str = "250 2.0.0 Ok"
    drop_after_bdat: bool = False
    commands: list[str] = field(default_factory=list)
    contents: list[bytes] = field(default_factory=list)
    connections: int = 0


async def _next_hop(script: Script, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
    script.connections += 1
    writer.write(b"220 hop ESMTP\r\n")
    accepted: list[str] = []
    mail_ok = False
    while line := await reader.readline():
        cmd = line.decode().rstrip("\r\n")
        script.commands.append(cmd)
        verb = cmd.split(" ", 1)[0].upper()
        if verb in ("EHLO", "LHLO"):
            ext = ["PIPELINING", "XFORWARD NAME ADDR PROTO HELO", "8BITMIME"]
            ext += ["CHUNKING"] if script.chunking else []
            writer.write(("".join(f"250-{e}\r\n" for e in ["hop", *ext[:-1]])
                          + f"250 {ext[-1]}\r\n").encode())
        elif verb == "XFORWARD":
            writer.write(script.xforward_reply.encode() + b"\r\n")
        elif verb == "MAIL":
            mail_ok, accepted = True, []
            writer.write(b"250 2.1.0 Ok\r\n")
        elif verb == "RCPT":
            address = cmd.split("<", 1)[1].split(">", 1)[0]
            reply = script.rcpt.get(address, "250 2.1.5 Ok")
            if reply.startswith("2") and mail_ok:
                accepted.append(address)
            writer.write(reply.encode() + b"\r\n")
        elif verb == "BDAT":
            size = int(cmd.split()[1])
            data = await reader.readexactly(size)
            if script.drop_after_bdat:
                writer.close()
                return
            if accepted:
                script.contents.append(data)
            replies = ([f"250 2.0.0 <{a}> Ok: queued as Q{len(script.contents)}"
                        for a in accepted] if script.lmtp and accepted
                       else [f"250 2.0.0 Ok: queued as Q{len(script.contents)}" if accepted
                             else "554 5.5.1 Error: no valid recipients"])
            writer.write("".join(r + "\r\n" for r in replies).encode())
            mail_ok, accepted = False, []
        elif verb == "DATA":
            writer.write(b"354 go ahead\r\n")
            body = bytearray()
            while (chunk := await reader.readline()) != b".\r\n":
                body += chunk
            script.contents.append(bytes(body))
            writer.write(f"250 2.0.0 Ok: queued as Q{len(script.contents)}\r\n".encode())
            mail_ok, accepted = False, []
        elif verb == "RSET":
            mail_ok, accepted = False, []
            writer.write(b"250 2.0.0 Ok\r\n")
        elif verb == "QUIT":
            writer.write(b"221 2.0.0 Bye\r\n")
            break
        await writer.drain()
    writer.close()


def _run(script: Script, outs: list[Outgoing], *, all_or_nothing: bool = True,
         xforward: bool = True) -> list[list[str]]:
    async def main() -> list[list[str]]:
        server = await asyncio.start_server(
            lambda r, w: _next_hop(script, r, w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        hop = NextHop("127.0.0.1", port, script.lmtp, 2, 2, "scanner.test", xforward)
        pool = ConnectionPool(hop)
        try:
            return [(await deliver(pool, out, all_or_nothing=all_or_nothing)).replies
                    for out in outs]
        finally:
            await pool.close()
            server.close()
    return asyncio.run(main())


def _out(*rcpts: str) -> Outgoing:
    return Outgoing("a@example.org", [Recipient(r) for r in rcpts], (), CONTENT,
                    ClientInfo(addr="192.0.2.1", name="client.example", helo="client.example"))


def _bdat_batches(script: Script) -> int:
    return sum(c.startswith("BDAT ") for c in script.commands)


def test_single_recipient_goes_out_in_one_batch_after_xforward_was_accepted_once():
    script = Script()
    replies = _run(script, [_out("b@example.test"), _out("b@example.test")])
    assert [r[0].split(": ", 1)[1] for r in replies] == [
        "250 2.0.0 Ok: queued as Q1", "250 2.0.0 Ok: queued as Q2"]
    # the first message on the connection used DATA (XFORWARD not yet known to be
    # accepted there), the second BDAT: with the same content (CRLF added at the end,
    # no dot-stuffing in a chunk)
    assert "DATA" in script.commands and _bdat_batches(script) == 1
    assert script.contents == [CONTENT.replace(b"\n.", b"\n..") + b"\r\n", CONTENT + b"\r\n"]
    assert script.connections == 1


def test_without_xforward_the_first_message_already_uses_bdat():
    script = Script()
    _run(script, [_out("b@example.test")], xforward=False)
    assert _bdat_batches(script) == 1 and "DATA" not in script.commands
    assert not any(c.startswith("XFORWARD") for c in script.commands)


def test_several_recipients_with_one_reply_for_all_use_data():
    """Our SMTP listener answers once for all recipients: one refused recipient must stop
    the transaction before any content is sent, which BDAT in one batch cannot do."""
    script = Script(rcpt={"busy@example.test": "452 4.2.2 Mailbox full"})
    replies = _run(script, [_out("b@example.test"), _out("b@example.test", "busy@example.test")])
    assert _bdat_batches(script) == 0
    assert all(r.startswith("451 4.2.2") for r in replies[1])
    assert len(script.contents) == 1  # the second message was not delivered to anyone


def test_refused_single_recipient_delivers_nothing():
    script = Script(rcpt={"busy@example.test": "452 4.2.2 Mailbox full"})
    replies = _run(script, [_out("b@example.test"), _out("busy@example.test")])
    assert _bdat_batches(script) == 1
    assert replies[1][0].startswith("451 4.2.2 from MTA(smtp:")
    assert len(script.contents) == 1


def test_lmtp_next_hop_gets_one_batch_and_answers_per_recipient():
    script = Script(lmtp=True, rcpt={"gone@example.test": "550 5.1.1 No such user"})
    replies = _run(script, [_out("b@example.test"),
                            _out("b@example.test", "gone@example.test", "c@example.test")],
                   all_or_nothing=False)
    assert _bdat_batches(script) == 1  # the second message
    second = replies[1]
    assert second[0].endswith("<b@example.test> Ok: queued as Q2")
    assert second[1].startswith("550 5.1.1 from MTA(lmtp:")
    assert second[2].endswith("<c@example.test> Ok: queued as Q2")


def test_connection_lost_after_the_batch_is_a_temporary_failure_and_not_retried():
    script = Script(drop_after_bdat=True)
    replies = _run(script, [_out("b@example.test"), _out("b@example.test")])
    assert replies[1][0].startswith("451 4.4.1 Next hop smtp:")
    # no second attempt on a new connection: the content may have been accepted
    assert _bdat_batches(script) == 1 and script.connections == 1


def test_chunking_off_in_the_configuration_keeps_data():
    script = Script()

    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: _next_hop(script, r, w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        hop = NextHop("127.0.0.1", port, False, 2, 2, "scanner.test", False, chunking=False)
        pool = ConnectionPool(hop)
        await deliver(pool, _out("b@example.test"), all_or_nothing=True)
        await pool.close()
        server.close()

    asyncio.run(main())
    assert _bdat_batches(script) == 0 and "DATA" in script.commands


@pytest.mark.postfix
def test_postfix_reinjection_smtpd_accepts_our_bdat():
    """A real Postfix smtpd: both messages delivered intact, its log counts one BDAT."""
    require_postfix()
    postfix = PostfixInstance(base=make_base_dir(), smtpd_port=free_port(),
                              reinject_port=free_port(), filter=None)
    postfix.start()
    try:
        async def main() -> list[list[str]]:
            hop = NextHop("127.0.0.1", postfix.reinject_port, False, 5, 30, "scanner.test",
                          True)
            pool = ConnectionPool(hop)
            try:
                return [(await deliver(pool, Outgoing(
                    "a@example.org", [Recipient("bob@example.test")], (),
                    CONTENT.replace(b"Subject: t", f"Subject: bdat{i}".encode()),
                    ClientInfo(addr="192.0.2.1", name="client.example")),
                    all_or_nothing=True)).replies for i in range(2)]
            finally:
                await pool.close()  # QUIT: Postfix logs the command counts

        replies = asyncio.run(main())
        assert all(r[0].startswith("250 2.0.0 from MTA(smtp:") for r in replies), replies
        paths = postfix.wait_delivered(2, 30, user="bob")
        bodies = sorted(p.read_bytes().split(b"\n\n", 1)[1] for p in paths)
        assert bodies == [b".starts with a dot\nlast line without CRLF\n"] * 2
        deadline = time.monotonic() + 10
        while "bdat=1" not in postfix.log_text():
            assert time.monotonic() < deadline, postfix.log_tail(20)
            time.sleep(0.1)
    finally:
        postfix.remove()

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
    xforward_replies: list[str] = field(default_factory=list)  # used first, one each
    mail_reply: str = "250 2.1.0 Ok"
    rcpt_limit: int = 0  # recipients taken per transaction (0: any number)
    too_many_reply: str = "452 4.5.3 Error: too many recipients"
    drop_at_bdat: int = 0  # close the connection after reading the n-th BDAT chunk
    lmtp_replies_then_drop: int | None = None  # after DATA's dot: this many, then close
    drop_at_data: bool = False  # close the connection instead of answering DATA
    pipelining: bool = True
    idle_421_after: float | None = None  # say 421 and close when idle this long
    commands: list[str] = field(default_factory=list)
    contents: list[bytes] = field(default_factory=list)
    connections: int = 0
    bdats: int = 0


async def _next_hop(script: Script, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
    script.connections += 1
    writer.write(b"220 hop ESMTP\r\n")
    accepted: list[str] = []
    mail_ok = False
    while True:
        try:
            async with asyncio.timeout(script.idle_421_after):
                line = await reader.readline()
        except TimeoutError:  # like Postfix's smtpd: a parting reply, then close
            writer.write(b"421 4.4.2 hop Error: timeout exceeded\r\n")
            await writer.drain()
            break
        if not line:
            break
        cmd = line.decode().rstrip("\r\n")
        script.commands.append(cmd)
        verb = cmd.split(" ", 1)[0].upper()
        if verb in ("EHLO", "LHLO"):
            ext = ["PIPELINING"] if script.pipelining else []
            ext += ["XFORWARD NAME ADDR PROTO HELO", "8BITMIME"]
            ext += ["CHUNKING"] if script.chunking else []
            writer.write(("".join(f"250-{e}\r\n" for e in ["hop", *ext[:-1]])
                          + f"250 {ext[-1]}\r\n").encode())
        elif verb == "XFORWARD":
            reply = (script.xforward_replies.pop(0) if script.xforward_replies
                     else script.xforward_reply)
            writer.write(reply.encode() + b"\r\n")
            if reply.startswith("421"):
                await writer.drain()
                break
        elif verb == "MAIL":
            mail_ok, accepted = script.mail_reply.startswith("2"), []
            writer.write(script.mail_reply.encode() + b"\r\n")
        elif verb == "RCPT":
            address = cmd.split("<", 1)[1].split(">", 1)[0]
            reply = script.rcpt.get(address, "250 2.1.5 Ok")
            if script.rcpt_limit and len(accepted) >= script.rcpt_limit:
                reply = script.too_many_reply
            if reply.startswith("2") and mail_ok:
                accepted.append(address)
            writer.write(reply.encode() + b"\r\n")
        elif verb == "BDAT":
            size = int(cmd.split()[1])
            data = await reader.readexactly(size)
            script.bdats += 1
            if script.bdats == script.drop_at_bdat:
                writer.close()
                return
            if accepted:
                script.contents.append(data)
            replies = [f"250 2.0.0 Ok: queued as Q{len(script.contents)}" if accepted
                       else "554 5.5.1 Error: no valid recipients"]
            writer.write("".join(r + "\r\n" for r in replies).encode())
            mail_ok, accepted = False, []
        elif verb == "DATA":
            if script.drop_at_data:
                break
            if not accepted:
                writer.write(b"554 5.5.1 Error: no valid recipients\r\n")
                continue
            writer.write(b"354 go ahead\r\n")
            body = bytearray()
            while (chunk := await reader.readline()) != b".\r\n":
                body += chunk
            script.contents.append(bytes(body))
            replies = ([f"250 2.0.0 <{a}> Ok: queued as Q{len(script.contents)}"
                        for a in accepted] if script.lmtp
                       else [f"250 2.0.0 Ok: queued as Q{len(script.contents)}"])
            if script.lmtp_replies_then_drop is not None:
                replies = replies[:script.lmtp_replies_then_drop]
                writer.write("".join(r + "\r\n" for r in replies).encode())
                await writer.drain()
                break
            writer.write("".join(r + "\r\n" for r in replies).encode())
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
         xforward: bool = True, chunking: bool = True, pause: float = 0.0,
         ) -> list[list[str]]:
    async def main() -> list[list[str]]:
        server = await asyncio.start_server(
            lambda r, w: _next_hop(script, r, w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        hop = NextHop("127.0.0.1", port, script.lmtp, 2, 2, "scanner.test", xforward,
                      chunking)
        pool = ConnectionPool(hop)
        try:
            replies = []
            for out in outs:
                replies.append((await deliver(pool, out, all_or_nothing=all_or_nothing))
                               .replies)
                await asyncio.sleep(pause)
            return replies
        finally:
            await pool.close()
            server.close()
    return asyncio.run(main())


def _out(*rcpts: str) -> Outgoing:
    return Outgoing("a@example.org", [Recipient(r) for r in rcpts], (), CONTENT,
                    ClientInfo(addr="192.0.2.1", name="client.example", helo="client.example"))


def _bdat_batches(script: Script) -> int:
    return sum(c.startswith("BDAT ") for c in script.commands)


def test_single_recipient_goes_out_in_one_batch():
    script = Script()
    replies = _run(script, [_out("b@example.test"), _out("b@example.test")])
    assert [r[0].split(": ", 1)[1] for r in replies] == [
        "250 2.0.0 Ok: queued as Q1", "250 2.0.0 Ok: queued as Q2"]
    # both with BDAT, the content as it is (CRLF added at the end, no dot-stuffing)
    assert "DATA" not in script.commands and _bdat_batches(script) == 2
    assert script.contents == [CONTENT + b"\r\n"] * 2
    assert script.connections == 1
    # XFORWARD went first, the size counts the CRLF added at the end
    size = len(CONTENT) + 2
    assert script.commands[1].startswith("XFORWARD ")
    assert script.commands[2] == "MAIL FROM:<a@example.org>"  # no SIZE offered here
    assert script.commands[4] == f"BDAT {size} LAST"


def test_without_xforward_bdat_too():
    script = Script()
    _run(script, [_out("b@example.test")], xforward=False)
    assert _bdat_batches(script) == 1 and "DATA" not in script.commands
    assert not any(c.startswith("XFORWARD") for c in script.commands)


def test_several_recipients_with_one_reply_for_all_use_data():
    """Our SMTP listener answers once for all recipients: one refused recipient must stop
    the transaction before any content is sent, which BDAT in one batch cannot do."""
    script = Script(rcpt={"busy@example.test": "452 4.2.2 Mailbox full"})
    replies = _run(script, [_out("b@example.test"), _out("b@example.test", "busy@example.test")])
    assert _bdat_batches(script) == 1  # the first message only
    assert "DATA" in script.commands
    assert all(r.startswith("451 4.2.2") for r in replies[1])
    assert len(script.contents) == 1  # the second message was not delivered to anyone


def test_refused_single_recipient_delivers_nothing():
    script = Script(rcpt={"busy@example.test": "452 4.2.2 Mailbox full"})
    replies = _run(script, [_out("b@example.test"), _out("busy@example.test")])
    assert _bdat_batches(script) == 2
    assert replies[1][0].startswith("451 4.2.2 from MTA(smtp:")
    assert len(script.contents) == 1


def test_lmtp_next_hop_keeps_data_and_answers_per_recipient():
    """An LMTP server that refuses a whole BDAT answers once, not per recipient: the
    number of replies to wait for would be unknown, so LMTP keeps DATA."""
    script = Script(lmtp=True, rcpt={"gone@example.test": "550 5.1.1 No such user"})
    replies = _run(script, [_out("b@example.test"),
                            _out("b@example.test", "gone@example.test", "c@example.test")],
                   all_or_nothing=False)
    assert _bdat_batches(script) == 0
    second = replies[1]
    assert second[0].endswith("<b@example.test> Ok: queued as Q2")
    assert second[1].startswith("550 5.1.1 from MTA(lmtp:")
    assert second[2].endswith("<c@example.test> Ok: queued as Q2")


def test_several_recipients_with_a_reply_each_use_bdat():
    """Behind an LMTP listener (a reply per recipient) an SMTP next hop gets BDAT even
    for several recipients: a refused one simply gets its own reply."""
    script = Script(rcpt={"gone@example.test": "550 5.1.1 No such user"})
    replies = _run(script, [_out("b@example.test", "gone@example.test", "c@example.test")],
                   all_or_nothing=False)
    assert _bdat_batches(script) == 1
    assert replies[0][0].endswith("Ok: queued as Q1") and replies[0][2] == replies[0][0]
    assert replies[0][1].startswith("550 5.1.1 from MTA(smtp:")


@pytest.mark.parametrize("chunking", [True, False])
def test_refused_xforward_is_logged_and_the_message_delivered(chunking: bool,
                                                              caplog: pytest.LogCaptureFixture):
    """As Postfix's own smtp client: a refused XFORWARD costs the next hop the client's
    attributes, never the message (a 451 would defer it on every retry)."""
    script = Script(xforward_reply="501 5.5.4 Bad ADDR syntax")
    replies = _run(script, [_out("b@example.test"), _out("b@example.test")],
                   chunking=chunking)
    assert all(r[0].startswith("250 2.0.0 from MTA(smtp:") for r in replies), replies
    assert len(script.contents) == 2 and script.connections == 1
    assert _bdat_batches(script) == (2 if chunking else 0)
    assert "refused XFORWARD, delivering without it: 501 5.5.4" in caplog.text
    # every message meets the same refusal: the log says it once, not once per message
    assert caplog.text.count("refused XFORWARD") == 1


@pytest.mark.parametrize("chunking", [True, False])
def test_refused_mail_leaves_the_connection_in_step(chunking: bool):
    """A refused MAIL in a pipelined batch: every reply is read (BDAT's too), so the
    next message on the same connection gets its own reply, not a stale one."""
    script = Script(mail_reply="452 4.3.1 Insufficient system storage")
    replies = _run(script, [_out("b@example.test")], chunking=chunking)
    assert replies[0][0].startswith("451 4.3.1 from MTA(smtp:")
    script.mail_reply = "250 2.1.0 Ok"
    script.commands.clear()

    replies = _run(script, [_out("b@example.test")] * 3, chunking=chunking)
    assert [r[0].rsplit(" ", 1)[1] for r in replies] == ["Q1", "Q2", "Q3"]
    assert len(script.contents) == 3


def test_ipv6_client_and_bad_name_go_out_in_forms_postfix_accepts():
    script = Script()
    out = Outgoing("a@example.org", [Recipient("b@example.test")], (), CONTENT,
                   ClientInfo(addr="2001:db8::1", name="bad_name!x", helo="h"))
    _run(script, [out])
    xforward = next(c for c in script.commands if c.startswith("XFORWARD"))
    assert "ADDR=IPV6:2001:db8::1" in xforward.split()
    assert "NAME=[UNAVAILABLE]" in xforward.split()


@pytest.mark.parametrize("chunking", [True, False])
def test_a_pooled_connection_the_next_hop_timed_out_is_not_reused(chunking: bool):
    """Postfix's smtpd says 421 and closes an idle connection (after 10 s under stress);
    the unread 421 must not be taken for the next message's reply."""
    script = Script(idle_421_after=0.2)
    replies = _run(script, [_out("b@example.test")] * 2, chunking=chunking, pause=0.6)
    assert all(r[0].startswith("250 2.0.0 from MTA(smtp:") for r in replies), replies
    assert script.connections == 2 and len(script.contents) == 2


def test_a_421_to_xforward_on_a_reused_connection_is_retried_on_a_fresh_one():
    """421 means the next hop processed nothing of the batch and is closing."""
    script = Script(xforward_replies=["250 2.0.0 Ok", "421 4.3.2 Service shutting down"])
    replies = _run(script, [_out("b@example.test")] * 2, chunking=False)
    assert all(r[0].startswith("250 2.0.0 from MTA(smtp:") for r in replies), replies
    assert script.connections == 2 and len(script.contents) == 2


def test_connection_lost_after_the_batch_is_a_temporary_failure_and_not_retried():
    script = Script(drop_at_bdat=2)
    replies = _run(script, [_out("b@example.test"), _out("b@example.test")])
    assert replies[0][0].startswith("250 2.0.0 from MTA(smtp:")
    assert replies[1][0].startswith("451 4.4.1 Next hop smtp:")
    # no second attempt on a new connection, although the one that failed was a reused
    # one: the content may have been accepted
    assert _bdat_batches(script) == 2 and script.connections == 1


def test_lmtp_replies_received_before_the_connection_broke_are_kept():
    """An LMTP next hop answers the first recipient after DATA's dot, then the
    connection breaks: that recipient has been delivered, so it gets the 250 (a 451
    would make Postfix deliver it again, outside SMTP's duplicate window); only the
    ones without a reply are deferred."""
    script = Script(lmtp=True, lmtp_replies_then_drop=1)
    replies = _run(script, [_out("b@example.test", "c@example.test", "d@example.test")],
                   all_or_nothing=False)[0]
    assert replies[0].startswith("250 2.0.0 from MTA(lmtp:")
    assert "<b@example.test> Ok: queued as Q1" in replies[0]
    assert [r[:10] for r in replies[1:]] == ["451 4.4.1 "] * 2
    assert len(script.contents) == 1 and script.connections == 1  # not sent again


def test_connection_lost_after_data_dot_is_a_temporary_failure_and_not_retried():
    """The DATA path of the BDAT test above: the next hop has the content (it may have
    queued it: SMTP's duplicate window, one copy) and closes before its reply."""
    script = Script(chunking=False, lmtp_replies_then_drop=0)
    replies = _run(script, [_out("b@example.test")])[0]
    assert replies[0].startswith("451 4.4.1 Next hop smtp:")
    assert len(script.contents) == 1 and script.connections == 1


@pytest.mark.parametrize("all_or_nothing", [True, False])
@pytest.mark.parametrize("pipelining", [True, False])
def test_connection_lost_before_the_reply_to_data_defers_every_recipient(
        all_or_nothing: bool, pipelining: bool):
    """The recipients were accepted, then the connection broke before DATA's 354: no
    content went out, so every recipient gets a 451 (without PIPELINING their reply was
    left empty)."""
    script = Script(lmtp=not all_or_nothing, chunking=False, drop_at_data=True,
                    pipelining=pipelining)
    replies = _run(script, [_out("b@example.test", "c@example.test")],
                   all_or_nothing=all_or_nothing)[0]
    assert [r[:10] for r in replies] == ["451 4.4.1 "] * 2, replies
    assert script.contents == []


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
    """A real Postfix smtpd: both messages delivered intact, its log counts two BDATs."""
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
        while "bdat=2" not in postfix.log_text():
            assert time.monotonic() < deadline, postfix.log_tail(20)
            time.sleep(0.1)
    finally:
        postfix.remove()


@pytest.mark.postfix
@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
def test_bare_line_feeds_go_out_as_crlf_to_a_postfix_that_forbids_them(chunking: bool):
    """A message with bare LFs (a file released or scanned, a bare-LF client) goes out
    with CRLF lines by DATA and by BDAT (RFC 3030 wants CRLF in BDAT content), to a
    Postfix that restricts bare LFs (smtpd_forbid_bare_newline; "reject" in 3.9+ refuses
    such content). BDAT sent the content as it was and appended CRLF to its bare-LF end:
    the recipient got an extra empty line at the end of the message."""
    require_postfix()
    postfix = PostfixInstance(base=make_base_dir(), smtpd_port=free_port(),
                              reinject_port=free_port(), filter=None, extra_main={
                                  "smtpd_forbid_bare_newline": "yes",  # "normal" from 3.9
                                  "smtpd_forbid_bare_newline_exclusions": ""})
    postfix.start()
    content = b"Subject: bare\n\n.dot line\nsecond\r\nthird\n"
    try:
        async def main() -> list[str]:
            hop = NextHop("127.0.0.1", postfix.reinject_port, False, 5, 30, "scanner.test",
                          True, chunking)
            pool = ConnectionPool(hop)
            try:
                return (await deliver(pool, Outgoing(
                    "a@example.org", [Recipient("bob@example.test")], (), content,
                    ClientInfo(addr="192.0.2.1", name="client.example")),
                    all_or_nothing=True)).replies
            finally:
                await pool.close()

        replies = asyncio.run(main())
        assert replies[0].startswith("250 2.0.0 from MTA(smtp:"), replies
        [path] = postfix.wait_delivered(1, 30, user="bob")
        assert path.read_bytes().split(b"\n\n", 1)[1] == b".dot line\nsecond\nthird\n"
    finally:
        postfix.remove()


def test_bdat_content_and_size_count_crlf_lines():
    script = Script()
    out = Outgoing("a@example.org", [Recipient("b@example.test")], (),
                   b"Subject: t\n\nbare\nlines", ClientInfo(addr="192.0.2.1"))
    assert _run(script, [out])[0][0].startswith("250 ")
    assert script.contents == [b"Subject: t\r\n\r\nbare\r\nlines\r\n"]
    assert f"BDAT {len(script.contents[0])} LAST" in script.commands


@pytest.mark.parametrize("protocols", ["all", "ipv4"])
def test_postfix_takes_an_ipv6_client_or_delivers_without_xforward(
        protocols: str, caplog: pytest.LogCaptureFixture):
    """An IPv6 client: Postfix with IPv6 on takes XFORWARD ADDR=IPV6:...; an IPv4-only one
    refuses the address, and the message is still delivered (with a warning) instead of
    being deferred forever."""
    require_postfix()
    postfix = PostfixInstance(base=make_base_dir(), smtpd_port=free_port(),
                              reinject_port=free_port(), filter=None,
                              extra_main={"inet_protocols": protocols})
    postfix.start()
    try:
        async def main() -> list[str]:
            hop = NextHop("127.0.0.1", postfix.reinject_port, False, 5, 30, "scanner.test",
                          True)
            pool = ConnectionPool(hop)
            try:
                return (await deliver(pool, Outgoing(
                    "a@example.org", [Recipient("bob@example.test")], (), CONTENT,
                    ClientInfo(addr="2001:db8::25", name="v6.example", port="4711")),
                    all_or_nothing=True)).replies
            finally:
                await pool.close()

        with caplog.at_level("WARNING", logger="scanner"):
            replies = asyncio.run(main())
        assert replies[0].startswith("250 2.0.0 from MTA(smtp:"), replies
        postfix.wait_delivered(1, 30, user="bob")
        refused = "refused XFORWARD, delivering without it" in caplog.text
        if protocols == "all":
            assert not refused, caplog.text
            deadline = time.monotonic() + 10
            while "2001:db8::25" not in postfix.log_text():
                assert time.monotonic() < deadline, postfix.log_tail(20)
                time.sleep(0.1)
        else:
            assert refused and "Bad ADDR syntax" in caplog.text, caplog.text
    finally:
        postfix.remove()


def test_a_next_hop_outage_is_logged_once_then_its_end(caplog: pytest.LogCaptureFixture):
    """Every message fails the same way while the next hop is down: the filter's log
    says so once (each message still gets its 451 and its summary line), then says
    when the next hop accepts again, with the number of failures in between."""
    script = Script()
    port = free_port()

    async def main() -> list[str]:
        hop = NextHop("127.0.0.1", port, False, 1, 2, "scanner.test", True, True)
        pool = ConnectionPool(hop)
        replies = [(await deliver(pool, _out("b@example.test"), all_or_nothing=True))
                   .replies[0] for _ in range(3)]
        server = await asyncio.start_server(
            lambda r, w: _next_hop(script, r, w), "127.0.0.1", port)
        try:
            replies.append((await deliver(pool, _out("b@example.test"), all_or_nothing=True))
                           .replies[0])
        finally:
            await pool.close()
            server.close()
        return replies

    caplog.set_level("WARNING", logger="scanner")
    replies = asyncio.run(main())
    assert all(r.startswith("451 4.4.1 Next hop") for r in replies[:3]), replies
    assert replies[3].startswith("250 2.0.0 from MTA(smtp:"), replies
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("next hop")]
    assert len(lines) == 2, lines
    assert "failed" in lines[0] and "more failed" not in lines[0]
    assert lines[1].endswith("accepting again (2 more failed deliveries since the last report)")


def test_a_big_message_arrives_intact_with_bdat_and_with_data():
    """Content above the size that is joined with the commands is written as a piece of
    its own, in slices drained one by one (no extra copy of a big message): the octets
    must not change."""
    from scanner.reinject.client import _SLICE, dot_stuff

    lines = [b"Subject: big\r\n", b"\r\n"]
    size = sum(map(len, lines))
    while size <= 2.5 * _SLICE:  # three slices, the last one short
        n = len(lines)
        lines.append(b"." * (n % 3) + b"line %d of a big message\r\n" % n)
        size += len(lines[-1])
    content = b"".join(lines)
    out = Outgoing("a@example.org", [Recipient("b@example.test")], (), content,
                   ClientInfo(addr="192.0.2.1"))
    bdat = Script()
    assert _run(bdat, [out])[0][0].startswith("250 ")
    assert _bdat_batches(bdat) == 1 and bdat.contents == [content]
    data = Script(chunking=False)
    assert _run(data, [out], chunking=False)[0][0].startswith("250 ")
    assert "DATA" in data.commands and data.contents == [dot_stuff(content)]


def test_dot_stuffing_makes_every_line_end_crlf_first():
    """A bare LF would end a line for Postfix but not for an RFC-strict next hop; as
    CRLF both read the same lines (found by tests/test_smtp_fuzz.py)."""
    from scanner.reinject.client import dot_stuff
    from scanner.smtp.data import unstuff

    assert dot_stuff(b"a\n.\nb") == b"a\r\n..\r\nb\r\n"
    assert dot_stuff(b".x\r\n.\r\nc\r\n") == b"..x\r\n..\r\nc\r\n"
    assert dot_stuff(b"a\r\n\n.b\r\n") == b"a\r\n\r\n..b\r\n"
    same = b"no bare line feed\r\n.here\r\n"
    assert unstuff(dot_stuff(same)) == same

"""Reinjection with BDAT (CHUNKING, RFC 3030): commands and content in one batch, and
what a refusal or a broken connection at each step means for every recipient.

The tests talk to the scripted next hop of tests/scripted_hop.py; real Postfix next hops
are in test_reinject_postfix.py, the octets that go out in test_reinject_content.py.
"""

from __future__ import annotations

import asyncio

import pytest

from scanner.reinject.deliver import NextHop, Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.task import ClientInfo, Recipient
from scanner.testing.postfix import free_port
from tests.scripted_hop import CONTENT, Script, bdat_batches, make_out, run_script, serve_script


def test_single_recipient_goes_out_in_one_batch():
    script = Script()
    replies = run_script(script, [make_out("b@example.test"), make_out("b@example.test")])
    assert [r[0].split(": ", 1)[1] for r in replies] == [
        "250 2.0.0 Ok: queued as Q1", "250 2.0.0 Ok: queued as Q2"]
    # both with BDAT, the content as it is (CRLF added at the end, no dot-stuffing)
    assert "DATA" not in script.commands and bdat_batches(script) == 2
    assert script.contents == [CONTENT + b"\r\n"] * 2
    assert script.connections == 1
    # XFORWARD went first, the size counts the CRLF added at the end
    size = len(CONTENT) + 2
    assert script.commands[1].startswith("XFORWARD ")
    assert script.commands[2] == "MAIL FROM:<a@example.org>"  # no SIZE offered here
    assert script.commands[4] == f"BDAT {size} LAST"


def test_without_xforward_bdat_too():
    script = Script()
    run_script(script, [make_out("b@example.test")], xforward=False)
    assert bdat_batches(script) == 1 and "DATA" not in script.commands
    assert not any(c.startswith("XFORWARD") for c in script.commands)


def test_several_recipients_with_one_reply_for_all_use_data():
    """Our SMTP listener answers once for all recipients: one refused recipient must stop
    the transaction before any content is sent, which BDAT in one batch cannot do."""
    script = Script(rcpt={"busy@example.test": "452 4.2.2 Mailbox full"})
    replies = run_script(script, [make_out("b@example.test"),
                                  make_out("b@example.test", "busy@example.test")])
    assert bdat_batches(script) == 1  # the first message only
    assert "DATA" in script.commands
    assert all(r.startswith("451 4.2.2") for r in replies[1])
    assert len(script.contents) == 1  # the second message was not delivered to anyone


def test_refused_single_recipient_delivers_nothing():
    script = Script(rcpt={"busy@example.test": "452 4.2.2 Mailbox full"})
    replies = run_script(script, [make_out("b@example.test"), make_out("busy@example.test")])
    assert bdat_batches(script) == 2
    assert replies[1][0].startswith("451 4.2.2 from MTA(smtp:")
    assert len(script.contents) == 1


def test_lmtp_next_hop_keeps_data_and_answers_per_recipient():
    """An LMTP server that refuses a whole BDAT answers once, not per recipient: the
    number of replies to wait for would be unknown, so LMTP keeps DATA."""
    script = Script(lmtp=True, rcpt={"gone@example.test": "550 5.1.1 No such user"})
    replies = run_script(
        script, [make_out("b@example.test"),
                 make_out("b@example.test", "gone@example.test", "c@example.test")],
        all_or_nothing=False)
    assert bdat_batches(script) == 0
    second = replies[1]
    assert second[0].endswith("<b@example.test> Ok: queued as Q2")
    assert second[1].startswith("550 5.1.1 from MTA(lmtp:")
    assert second[2].endswith("<c@example.test> Ok: queued as Q2")


def test_several_recipients_with_a_reply_each_use_bdat():
    """Behind an LMTP listener (a reply per recipient) an SMTP next hop gets BDAT even
    for several recipients: a refused one simply gets its own reply."""
    script = Script(rcpt={"gone@example.test": "550 5.1.1 No such user"})
    replies = run_script(
        script, [make_out("b@example.test", "gone@example.test", "c@example.test")],
        all_or_nothing=False)
    assert bdat_batches(script) == 1
    assert replies[0][0].endswith("Ok: queued as Q1") and replies[0][2] == replies[0][0]
    assert replies[0][1].startswith("550 5.1.1 from MTA(smtp:")


@pytest.mark.parametrize("chunking", [True, False])
def test_refused_xforward_is_logged_and_the_message_delivered(chunking: bool,
                                                              caplog: pytest.LogCaptureFixture):
    """As Postfix's own smtp client: a refused XFORWARD costs the next hop the client's
    attributes, never the message (a 451 would defer it on every retry)."""
    script = Script(xforward_reply="501 5.5.4 Bad ADDR syntax")
    replies = run_script(script, [make_out("b@example.test"), make_out("b@example.test")],
                        chunking=chunking)
    assert all(r[0].startswith("250 2.0.0 from MTA(smtp:") for r in replies), replies
    assert len(script.contents) == 2 and script.connections == 1
    assert bdat_batches(script) == (2 if chunking else 0)
    assert "refused XFORWARD, delivering without it: 501 5.5.4" in caplog.text
    # every message meets the same refusal: the log says it once, not once per message
    assert caplog.text.count("refused XFORWARD") == 1


@pytest.mark.parametrize("chunking", [True, False])
def test_refused_mail_leaves_the_connection_in_step(chunking: bool):
    """A refused MAIL in a pipelined batch: every reply is read (BDAT's too), so the
    next message on the same connection gets its own reply, not a stale one."""
    script = Script(mail_reply="452 4.3.1 Insufficient system storage")
    replies = run_script(script, [make_out("b@example.test")], chunking=chunking)
    assert replies[0][0].startswith("451 4.3.1 from MTA(smtp:")
    script.mail_reply = "250 2.1.0 Ok"
    script.commands.clear()

    replies = run_script(script, [make_out("b@example.test")] * 3, chunking=chunking)
    assert [r[0].rsplit(" ", 1)[1] for r in replies] == ["Q1", "Q2", "Q3"]
    assert len(script.contents) == 3


def test_ipv6_client_and_bad_name_go_out_in_forms_postfix_accepts():
    script = Script()
    out = Outgoing("a@example.org", [Recipient("b@example.test")], (), CONTENT,
                   ClientInfo(addr="2001:db8::1", name="bad_name!x", helo="h"))
    run_script(script, [out])
    xforward = next(c for c in script.commands if c.startswith("XFORWARD"))
    assert "ADDR=IPV6:2001:db8::1" in xforward.split()
    assert "NAME=[UNAVAILABLE]" in xforward.split()


@pytest.mark.parametrize("chunking", [True, False])
def test_a_pooled_connection_the_next_hop_timed_out_is_not_reused(chunking: bool):
    """Postfix's smtpd says 421 and closes an idle connection (after 10 s under stress);
    the unread 421 must not be taken for the next message's reply."""
    script = Script(idle_421_after=0.2)
    replies = run_script(script, [make_out("b@example.test")] * 2, chunking=chunking, pause=0.6)
    assert all(r[0].startswith("250 2.0.0 from MTA(smtp:") for r in replies), replies
    assert script.connections == 2 and len(script.contents) == 2


def test_a_421_to_xforward_on_a_reused_connection_is_retried_on_a_fresh_one():
    """421 means the next hop processed nothing of the batch and is closing."""
    script = Script(xforward_replies=["250 2.0.0 Ok", "421 4.3.2 Service shutting down"])
    replies = run_script(script, [make_out("b@example.test")] * 2, chunking=False)
    assert all(r[0].startswith("250 2.0.0 from MTA(smtp:") for r in replies), replies
    assert script.connections == 2 and len(script.contents) == 2


def test_connection_lost_after_the_batch_is_a_temporary_failure_and_not_retried():
    script = Script(drop_at_bdat=2)
    replies = run_script(script, [make_out("b@example.test"), make_out("b@example.test")])
    assert replies[0][0].startswith("250 2.0.0 from MTA(smtp:")
    assert replies[1][0].startswith("451 4.4.1 Next hop smtp:")
    # no second attempt on a new connection, although the one that failed was a reused
    # one: the content may have been accepted
    assert bdat_batches(script) == 2 and script.connections == 1


def test_lmtp_replies_received_before_the_connection_broke_are_kept():
    """An LMTP next hop answers the first recipient after DATA's dot, then the
    connection breaks: that recipient has been delivered, so it gets the 250 (a 451
    would make Postfix deliver it again, outside SMTP's duplicate window); only the
    ones without a reply are deferred."""
    script = Script(lmtp=True, lmtp_replies_then_drop=1)
    replies = run_script(script, [make_out("b@example.test", "c@example.test", "d@example.test")],
                        all_or_nothing=False)[0]
    assert replies[0].startswith("250 2.0.0 from MTA(lmtp:")
    assert "<b@example.test> Ok: queued as Q1" in replies[0]
    assert [r[:10] for r in replies[1:]] == ["451 4.4.1 "] * 2
    assert len(script.contents) == 1 and script.connections == 1  # not sent again


def test_connection_lost_after_data_dot_is_a_temporary_failure_and_not_retried():
    """The DATA path of the BDAT test above: the next hop has the content (it may have
    queued it: SMTP's duplicate window, one copy) and closes before its reply."""
    script = Script(chunking=False, lmtp_replies_then_drop=0)
    replies = run_script(script, [make_out("b@example.test")])[0]
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
    replies = run_script(script, [make_out("b@example.test", "c@example.test")],
                        all_or_nothing=all_or_nothing)[0]
    assert [r[:10] for r in replies] == ["451 4.4.1 "] * 2, replies
    assert script.contents == []


def test_chunking_off_in_the_configuration_keeps_data():
    script = Script()

    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: serve_script(script, r, w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        hop = NextHop("127.0.0.1", port, False, 2, 2, "scanner.test", False, chunking=False)
        pool = ConnectionPool(hop)
        await deliver(pool, make_out("b@example.test"), all_or_nothing=True)
        await pool.close()
        server.close()

    asyncio.run(main())
    assert bdat_batches(script) == 0 and "DATA" in script.commands


def test_a_next_hop_outage_is_logged_once_then_its_end(caplog: pytest.LogCaptureFixture):
    """Every message fails the same way while the next hop is down: the filter's log
    says so once (each message still gets its 451 and its summary line), then says
    when the next hop accepts again, with the number of failures in between."""
    script = Script()
    port = free_port()

    async def main() -> list[str]:
        hop = NextHop("127.0.0.1", port, False, 1, 2, "scanner.test", True, True)
        pool = ConnectionPool(hop)
        replies = [(await deliver(pool, make_out("b@example.test"), all_or_nothing=True))
                   .replies[0] for _ in range(3)]
        server = await asyncio.start_server(
            lambda r, w: serve_script(script, r, w), "127.0.0.1", port)
        try:
            replies.append((await deliver(pool, make_out("b@example.test"), all_or_nothing=True))
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

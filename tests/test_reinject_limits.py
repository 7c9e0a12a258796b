"""Reinjection to a next hop that takes only so many recipients per transaction.

Postfix's smtpd answers ``452 4.5.3 Error: too many recipients`` to the recipients past
``smtpd_recipient_limit``; RFC 5321 4.5.3.1.10 says the client sends those in a later
transaction (amavis and Postfix's own smtp client do). Before, behind our SMTP listener
(one reply for all recipients) the 452 deferred the whole message, at every retry, until
Postfix bounced it; behind the LMTP listener the extra recipients waited for a retry.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from scanner.reinject.deliver import NextHop, Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.task import ClientInfo, Recipient
from scanner.testing.postfix import PostfixInstance, free_port, make_base_dir
from tests.postfix_stack import Stack, require_postfix, wait_ids
from tests.scripted_hop import Script, serve_script

USERS = [f"user{i}@example.test" for i in range(7)]
CONTENT = b"Subject: many\r\nMessage-ID: <many@example.org>\r\n\r\nfor seven\r\n"


async def _deliver(port: int, rcpts: list[str], all_or_nothing: bool,
                   chunking: bool = True) -> list[str]:
    hop = NextHop("127.0.0.1", port, False, 5, 30, "scanner.test", True, chunking)
    pool = ConnectionPool(hop)
    try:
        return (await deliver(pool, Outgoing(
            "a@example.org", [Recipient(r) for r in rcpts], (), CONTENT,
            ClientInfo(addr="192.0.2.1")), all_or_nothing=all_or_nothing)).replies
    finally:
        await pool.close()


def _run_script(script: Script, rcpts: list[str], all_or_nothing: bool) -> list[str]:
    """Deliver to the scripted next hop of tests/scripted_hop.py (DATA, no BDAT)."""
    async def main() -> list[str]:
        server = await asyncio.start_server(lambda r, w: serve_script(script, r, w),
                                            "127.0.0.1", 0)
        try:
            return await _deliver(server.sockets[0].getsockname()[1], rcpts,
                                  all_or_nothing, chunking=False)
        finally:
            server.close()
    return asyncio.run(main())


@pytest.mark.postfix
@pytest.mark.parametrize("all_or_nothing", [True, False], ids=["smtp-in", "lmtp-in"])
def test_recipients_past_postfixs_limit_go_in_later_transactions(all_or_nothing: bool):
    """smtpd_recipient_limit = 3 and seven recipients: three transactions (3, 3, 1),
    every recipient delivered once and answered 250."""
    require_postfix()
    postfix = PostfixInstance(base=make_base_dir(), smtpd_port=free_port(),
                              reinject_port=free_port(), filter=None,
                              extra_main={"smtpd_recipient_limit": "3"})
    postfix.start()
    try:
        replies = asyncio.run(_deliver(postfix.smtpd_port, USERS, all_or_nothing))
        assert all(r.startswith("250 2.0.0 from MTA(smtp:") for r in replies), replies
        assert len({r.rsplit(" ", 1)[1] for r in replies}) == 3  # three queue ids
        postfix.wait_delivered(7, 30)
        for user in USERS:
            assert len(postfix.maildir_messages(user.split("@")[0])) == 1, user
    finally:
        postfix.remove()


@pytest.mark.parametrize("all_or_nothing", [True, False])
def test_a_552_too_many_recipients_is_temporary_and_sent_again(all_or_nothing: bool):
    """RFC 5321 4.5.3.1.10: an old server's 552 for too many recipients is treated as
    temporary; the recipient goes in the next transaction, never bounced."""
    script = Script(chunking=False, rcpt_limit=2,
                    too_many_reply="552 5.5.3 Too many recipients")
    replies = _run_script(script, USERS[:5], all_or_nothing)
    assert all(r.startswith("250 ") for r in replies), replies
    assert len(script.contents) == 3  # 2 + 2 + 1
    rcpts = [c for c in script.commands if c.startswith("RCPT")]
    assert len(rcpts) == 5 + 2 + 1  # later transactions send only as many as fit


def test_no_progress_leaves_the_recipients_deferred():
    """Every recipient refused with "too many recipients" (nothing taken): no loop, a
    temporary failure for each."""
    script = Script(chunking=False, rcpt={u: "452 4.5.3 Error: too many recipients"
                                          for u in USERS[:3]})
    replies = _run_script(script, USERS[:3], all_or_nothing=False)
    assert [r[:10] for r in replies] == ["451 4.5.3 "] * 3, replies
    assert sum(c.startswith("MAIL") for c in script.commands) == 1


@pytest.mark.postfix
@pytest.mark.parametrize("all_or_nothing", [True, False], ids=["smtp-in", "lmtp-in"])
def test_recipients_past_the_overshoot_limit_that_cost_the_connection(all_or_nothing: bool):
    """Past smtpd_recipient_limit + smtpd_recipient_overshoot_limit Postfix counts each
    extra recipient as an error and, at smtpd_hard_error_limit, says ``421 4.7.0 Error:
    too many errors`` and closes: the transaction breaks before any content is taken.
    The same recipients go again, as many per transaction as it took. Before, every
    recipient got 451, and every retry broke the same way until Postfix bounced it."""
    require_postfix()
    postfix = PostfixInstance(base=make_base_dir(), smtpd_port=free_port(),
                              reinject_port=free_port(), filter=None, extra_main={
                                  "smtpd_recipient_limit": "3",
                                  "smtpd_recipient_overshoot_limit": "1",
                                  "smtpd_hard_error_limit": "2",
                                  "smtpd_error_sleep_time": "0"})
    postfix.start()
    try:
        replies = asyncio.run(_deliver(postfix.smtpd_port, USERS, all_or_nothing))
        assert all(r.startswith("250 2.0.0 from MTA(smtp:") for r in replies), replies
        postfix.wait_delivered(7, 30)
        for user in USERS:
            assert len(postfix.maildir_messages(user.split("@")[0])) == 1, user
        assert "too many errors after RCPT" in postfix.log_text()  # the case under test
    finally:
        postfix.remove()


def _limit_reinjection(stack: Stack, limit: int) -> None:
    """Give the reinjection smtpd (only) a recipient limit, and reload."""
    master = stack.postfix.conf_dir / "master.cf"
    marker = f"127.0.0.1:{stack.postfix.reinject_port} "
    lines = master.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(marker))
    lines.insert(at + 1, f"  -o smtpd_recipient_limit={limit}")
    master.write_text("\n".join(lines) + "\n")
    stack.postfix.reload()


@pytest.mark.postfix
@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
def test_postfix_to_scanner_to_a_reinjection_smtpd_with_a_low_recipient_limit(protocol: str):
    """Postfix hands seven recipients to the filter at once; its reinjection smtpd takes
    three per transaction. Every recipient is delivered once, without any deferral."""
    require_postfix()
    stack = Stack(protocol=protocol, extra='[checks]\nenabled = []\n').start()
    try:
        _limit_reinjection(stack, 3)
        qid = stack.postfix.send("alice@example.org", USERS, CONTENT)
        ids = wait_ids(stack, {"<many@example.org>"}, 60, copies=7)
        assert ids["<many@example.org>"] == 7
        deadline = time.monotonic() + 20
        while len(re.findall(rf"{qid}: to=<[^>]*>.*status=sent",
                             stack.postfix.log_text())) < 7:
            assert time.monotonic() < deadline, stack.postfix.log_tail(30)
            time.sleep(0.2)
        assert f"{qid}: to=<" in stack.postfix.log_text()
        deferred = [ln for ln in stack.postfix.log_text().splitlines()
                    if qid in ln and "status=deferred" in ln]
        assert deferred == []
    finally:
        stack.remove()


@pytest.mark.parametrize("all_or_nothing", [True, False])
def test_an_lmtp_next_hop_with_a_recipient_limit_gets_the_rest_later(all_or_nothing: bool):
    """The same towards an LMTP next hop (one reply per accepted recipient after DATA)."""
    script = Script(lmtp=True, chunking=False, rcpt_limit=3)

    async def main() -> list[str]:
        server = await asyncio.start_server(lambda r, w: serve_script(script, r, w),
                                            "127.0.0.1", 0)
        hop = NextHop("127.0.0.1", server.sockets[0].getsockname()[1], True, 2, 2,
                      "scanner.test", False, False)
        pool = ConnectionPool(hop)
        try:
            return (await deliver(pool, Outgoing(
                "a@example.org", [Recipient(r) for r in USERS], (), CONTENT,
                ClientInfo(addr="192.0.2.1")), all_or_nothing=all_or_nothing)).replies
        finally:
            await pool.close()
            server.close()

    replies = asyncio.run(main())
    assert all(r.startswith("250 2.0.0 from MTA(lmtp:") for r in replies), replies
    assert [r.rsplit(" ", 1)[1] for r in replies] == ["Q1"] * 3 + ["Q2"] * 3 + ["Q3"]
    assert script.connections == 1

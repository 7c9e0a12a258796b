"""Reinjection against a real Postfix smtpd that refuses or fails at each stage.

The next hop is the injection smtpd of a private :class:`PostfixInstance` (no content
filter), configured through main.cf to refuse at the stage under test; the checks are
what our replies say and what Postfix delivered, queued or logged.
"""

from __future__ import annotations

import asyncio

import pytest

from scanner.reinject.deliver import NextHop, Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.task import ClientInfo, Recipient
from scanner.testing.postfix import PostfixInstance
from tests.postfix_stack import plain_postfix

pytestmark = pytest.mark.postfix


def _out(sender: str, rcpts: list[str], data: bytes = b"Subject: t\r\n\r\nbody\r\n",
         params: tuple = ()) -> Outgoing:
    return Outgoing(sender, [Recipient(r) for r in rcpts], params, data,
                    ClientInfo(addr="192.0.2.1"))


def _send_all(postfix: PostfixInstance, outs: list[Outgoing], *, all_or_nothing: bool = True,
              chunking: bool = True) -> list[list[str]]:
    """Deliver ``outs`` one after the other over one pool (a connection is reused)."""
    async def main() -> list[list[str]]:
        hop = NextHop("127.0.0.1", postfix.smtpd_port, False, 5, 30, "scanner.test", True,
                      chunking)
        pool = ConnectionPool(hop)
        try:
            return [(await deliver(pool, out, all_or_nothing=all_or_nothing)).replies
                    for out in outs]
        finally:
            await pool.close()
    return asyncio.run(main())


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_refused_data_does_not_spoil_the_next_message_on_the_connection(pipelining: bool):
    """Postfix keeps the transaction open after refusing DATA: without RSET, the next
    message on the pooled connection got ``503 5.5.1 Error: nested MAIL command`` for
    MAIL, a 5xx for every recipient, and Postfix bounced good mail."""
    postfix = plain_postfix(
        smtpd_data_restrictions="check_sender_access inline:{bad@example.org=REJECT}",
        smtpd_discard_ehlo_keywords="" if pipelining else "pipelining")
    try:
        rcpts = ["bob@example.test", "carol@example.test"]
        first, second = _send_all(postfix, [_out("bad@example.org", rcpts),
                                            _out("good@example.org", rcpts)])
        assert [r[:9] for r in first] == ["554 5.7.1"] * 2, first
        assert all(r.startswith("250 2.0.0 from MTA(smtp:") for r in second), second
        postfix.wait_delivered(2, 30)
    finally:
        postfix.remove()


def test_non_ascii_addresses_are_not_sent_to_a_next_hop_without_smtputf8():
    """RFC 6531 3.4: a message that asked for SMTPUTF8 must not go with non-ASCII
    addresses to a server that does not offer it. As amavis: a non-ASCII sender fails
    every recipient (550 5.6.7), a non-ASCII recipient itself (553 5.6.7), and the
    others are delivered. Before, the addresses went out as they were."""
    postfix = plain_postfix(smtputf8_enable="no")
    utf8 = (("SMTPUTF8", None),)
    try:
        by_sender, by_rcpt = _send_all(postfix, [
            _out("jöe@example.org", ["bob@example.test"], params=utf8),
            _out("alice@example.org", ["bob@example.test", "jöe@example.test"],
                 params=utf8)])
        assert [r[:9] for r in by_sender] == ["550 5.6.7"], by_sender
        assert by_rcpt[0].startswith("250 2.0.0 from MTA(smtp:"), by_rcpt
        assert by_rcpt[1].startswith("553 5.6.7 ") and "SMTPUTF8" in by_rcpt[1], by_rcpt
        postfix.wait_delivered(1, 30, user="bob")
        log = postfix.log_text()
        assert "reject: RCPT" not in log  # jöe was never sent to it
        assert log.count("client=localhost") == 1  # one transaction: alice's
    finally:
        postfix.remove()


STAGES = dict(
    smtpd_delay_reject="no",
    smtpd_sender_restrictions="check_sender_access inline:{mailperm@example.org=REJECT}",
    smtpd_recipient_restrictions="check_recipient_access inline:{busy@example.test="
                                 "DEFER_IF_PERMIT},permit_mynetworks,reject",
    smtpd_end_of_data_restrictions="check_sender_access inline:{eod@example.org=REJECT,"
                                   "eodtemp@example.org=DEFER_IF_PERMIT}")


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize(("sender", "rcpts", "expect"), [
    ("eod@example.org", ["bob@example.test", "carol@example.test"], "554 5.7.1"),  # DATA
    ("eodtemp@example.org", ["bob@example.test"], "451 4.7.1"),  # BDAT if pipelining
    ("mailperm@example.org", ["bob@example.test"], "554 5.7.1"),
    ("alice@example.org", ["bob@example.test", "busy@example.test"], "451 4.7.1"),
], ids=["end-of-data-5xx", "end-4xx-one-rcpt", "mail-5xx", "rcpt-4xx"])
def test_a_refusal_at_any_stage_leaves_the_connection_in_step(
        pipelining: bool, sender: str, rcpts: list[str], expect: str):
    """Refused at MAIL, RCPT, or by smtpd_end_of_data_restrictions, then a good message
    on the same connection: the refusal is quoted to every recipient and the next
    message delivered. After an end-of-data refusal, Postfix 3.7 keeps the transaction
    open: the next MAIL got ``503 5.5.1 Error: nested MAIL command`` (a 5xx, bounced)."""
    postfix = plain_postfix(**STAGES, smtpd_discard_ehlo_keywords=""
                       if pipelining else "pipelining")
    try:
        refused, good = _send_all(postfix, [_out(sender, rcpts),
                                            _out("good@example.org", ["carol@example.test"])])
        assert [r[:9] for r in refused] == [expect] * len(rcpts), refused
        assert good[0].startswith("250 2.0.0 from MTA(smtp:"), good
        postfix.wait_delivered(1, 30, user="carol")
        assert postfix.maildir_messages("bob") == []  # nothing of the refused one
    finally:
        postfix.remove()

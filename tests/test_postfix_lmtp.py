"""The LMTP listener behind a real Postfix ``lmtp`` client: one reply per recipient.

Postfix's lmtp client sends LHLO and XFORWARD, pipelines the recipients and reads one
DATA reply per recipient, so a recipient whose policy rejects the message is bounced by
Postfix while the others are delivered from the same transaction.
"""

from __future__ import annotations

import time

import pytest

from tests.postfix_stack import Stack, require_postfix, split_delivered, wait_ids

pytestmark = [pytest.mark.postfix, pytest.mark.slow]

POLICY = """
[checks]
disabled = ["auth", "dnsbl", "uribl", "clamav", "bayes"]
[policy]
local_domains = ["example.test"]
[policy.recipients."rejecter@example.test"]
spam_destiny = "reject"
block_senders = ["@spam.example"]
"""


@pytest.fixture(scope="module")
def stack():
    require_postfix()
    s = Stack(protocol="lmtp", extra=POLICY).start()
    s.postfix.add_users("rejecter")
    yield s
    s.remove()


def _msg(mid: str, sender: str = "alice@example.org") -> bytes:
    return (f"From: {sender}\r\nTo: team@example.test\r\nSubject: lmtp {mid}\r\n"
            f"Message-ID: <{mid}@example.org>\r\n\r\nHello over LMTP.\r\n").encode()


def _wait_log(stack: Stack, needle: str, count: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = stack.postfix.log_text()
        if log.count(needle) >= count:
            return log
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not {count} times in Postfix's log:\n"
                         + stack.postfix.log_tail(30))


def test_three_recipients_each_delivered_once_over_lmtp(stack: Stack):
    qid = stack.postfix.send("alice@example.org",
                             ["bob@example.test", "carol@example.test", "dave@example.test"],
                             _msg("lmtp1"))
    wait_ids(stack, {"<lmtp1@example.org>"}, 30, copies=3)  # one per user
    for user in ("bob", "carol", "dave"):
        got = [p.read_bytes() for p in stack.postfix.maildir_messages(user)
               if b"<lmtp1@example.org>" in p.read_bytes()]
        assert len(got) == 1, user
        head, body = split_delivered(got[0])
        assert f"(scanner, port {stack.filter_port}) with LMTP id".encode() in head
        assert body == b"Hello over LMTP.\n"
    log = _wait_log(stack, f"{qid}: to=<", 3)
    sent = [ln for ln in log.splitlines() if f"{qid}: to=<" in ln and "status=sent" in ln]
    assert len(sent) == 3
    # Postfix's lmtp client logged the amavis-style reply quoting the reinjection
    assert all("250 2.0.0 from MTA(smtp:[127.0.0.1]:" in ln for ln in sent)
    lines = [ln for ln in stack.filter.summary_lines() if "lmtp1@example.org" in ln]
    assert len(lines) == 1 and lines[0].count("@example.test>") == 3


def test_a_rejecting_recipient_is_bounced_and_the_others_delivered(stack: Stack):
    qid = stack.postfix.send("promo@spam.example",
                             ["rejecter@example.test", "carol@example.test"],
                             _msg("lmtp2", sender="promo@spam.example"))
    log = _wait_log(stack, f"{qid}: to=<", 2)
    mine = [ln for ln in log.splitlines() if f"{qid}: to=<" in ln]
    rejected = [ln for ln in mine if "to=<rejecter@example.test>" in ln]
    passed = [ln for ln in mine if "to=<carol@example.test>" in ln]
    assert len(rejected) == 1 and "status=bounced" in rejected[0]
    assert "554 5.7.0 Reject" in rejected[0]
    assert len(passed) == 1 and "status=sent" in passed[0]
    wait_ids(stack, {"<lmtp2@example.org>"}, 30)
    carol = [p.read_bytes() for p in stack.postfix.maildir_messages("carol")
             if b"<lmtp2@example.org>" in p.read_bytes()]
    assert len(carol) == 1
    assert not [p for p in stack.postfix.maildir_messages("rejecter")
                if b"<lmtp2@example.org>" in p.read_bytes()]


def test_next_hop_down_defers_each_recipient_then_delivers_once(stack: Stack):
    stack.set_reinjection(up=False)
    try:
        qid = stack.postfix.send("alice@example.org", ["bob@example.test", "dave@example.test"],
                                 _msg("lmtp3"))
        log = _wait_log(stack, f"{qid}: to=<", 2)
        mine = [ln for ln in log.splitlines() if f"{qid}: to=<" in ln]
        # one 451 per recipient from the LMTP listener, both kept in Postfix's queue
        assert all("status=deferred" in ln and "451 4.4.1" in ln for ln in mine), mine
        assert qid in stack.postfix.queue_ids()
    finally:
        stack.set_reinjection(up=True)
    stack.postfix.flush()
    wait_ids(stack, {"<lmtp3@example.org>"}, 60)
    for user in ("bob", "dave"):
        deadline = time.monotonic() + 30
        got: list[bytes] = []
        while time.monotonic() < deadline and not got:
            got = [p.read_bytes() for p in stack.postfix.maildir_messages(user)
                   if b"<lmtp3@example.org>" in p.read_bytes()]
            time.sleep(0.2)
        assert len(got) == 1, user

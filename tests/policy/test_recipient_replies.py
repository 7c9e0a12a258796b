"""Recipients of one message with different policies (tests/policy/recipient_mix.py):
the replies over SMTP and LMTP, the DSN (one per message, headers only, SMTPUTF8, none
for a faked sender's virus or spam above the DSN cut-off, deferred by the next hop),
and the copies held in quarantine, against amavis's behaviour."""

from __future__ import annotations

import logging

import pytest

from scanner.smtp.handler import aggregate
from scanner.task import Recipient
from tests.policy.recipient_mix import (
    BADH,
    BANNED,
    RAW,
    WORM,
    copies,
    dsns,
    run,
    summaries,
    summary,
)


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scanner")


def test_smtp_reject_for_some_passed_for_others_follows_the_dsn_rules(sink, caplog):
    """Over SMTP a policy reject next to a passed recipient becomes a DSN, as in amavis,
    but not for spam at or above dsn_cutoff_level (a blocklisted sender scores 100)."""
    policy = ('[policy.recipients."rejecter@example.test"]\nspam_destiny = "reject"\n'
              "block_senders = ['@spam.example']\n")
    replies, _ = run(sink, policy, [], ["rejecter@example.test", "carol@example.test"])
    assert [r[:3] for r in replies] == ["250", "250"], replies
    assert list(copies(sink)) == ["carol@example.test"]
    assert dsns(sink) == []  # no backscatter to a spammer's forged sender
    assert all("NoBounceInbound" in line for line in summaries(caplog))


def test_smtp_all_discarded_or_rejected_gives_the_reject(sink):
    """amavis: when every recipient is discarded or rejected (one at least), Postfix
    gets the reject (before-queue: the client is refused, no backscatter)."""
    policy = ("block_senders = ['@spam.example']\n"
              '[policy.recipients."rejecter@example.test"]\nspam_destiny = "reject"\n'
              '[policy.recipients."dave@example.test"]\nspam_destiny = "discard"\n')
    replies, _ = run(sink, policy, [], ["dave@example.test", "rejecter@example.test"])
    assert [r[:9] for r in replies] == ["554 5.7.0", "554 5.7.0"], replies
    assert copies(sink) == {} and dsns(sink) == []


def test_reject_status_per_category_over_lmtp(sink):
    policy = ("bad_header_destiny = 'reject'\n"
              '[policy.recipients."carol@example.test"]\nbypass_header_checks = true\n')
    replies, _ = run(sink, policy, [BADH], ["bob@example.test", "carol@example.test"],
                     sender="alice@example.org", protocol="LMTP")
    assert replies[0].startswith("554 5.6.0 Reject"), replies
    assert replies[1].startswith("250")


def test_bounce_dsn_returns_headers_only(sink):
    """amavis's DSN: multipart/report, per-recipient fields, Original-Recipient from
    ORCPT, from <> through the next hop, and only the header section of the message
    (never the banned file or the virus back to the sender), whatever RET says."""
    policy = ('[policy.recipients."bouncer@example.test"]\nbanned_destiny = "bounce"\n'
              '[policy.recipients."carol@example.test"]\nbanned_lover = true\n')
    rcpt = Recipient("bouncer@example.test", (("ORCPT", "rfc822;Bouncer@Example.TEST"),))
    replies, _ = run(sink, policy, [BANNED], [rcpt, "carol@example.test"],
                     sender="alice@example.org", mail_params=(("RET", "FULL"),))
    assert [r[:3] for r in replies] == ["250", "250"]
    [dsn] = dsns(sink)
    assert dsn.recipients == ["alice@example.org"]
    data = dsn.data
    assert b"multipart/report; report-type=delivery-status" in data
    assert b"Original-Recipient: rfc822; Bouncer@Example.TEST" in data
    assert b"Final-Recipient: rfc822; bouncer@example.test" in data
    assert b"Action: failed" in data and b"Status: 5.7.0" in data
    assert b"Diagnostic-Code: smtp; 554 5.7.0" in data
    assert b"Content-Type: text/rfc822-headers" in data
    assert b"Message-ID: <mix@spam.example>" in data
    assert b"BODYMARK" not in data
    assert list(copies(sink)) == ["carol@example.test"]


def test_one_dsn_for_every_bounced_recipient_of_a_message(sink, caplog):
    """amavis sends one DSN per message listing the recipients (RFC 3461 5.2.8: one DSN
    may describe several); scanner sent one per bounced recipient, so a message to 50
    colleagues came back 50 times. A recipient with NOTIFY=NEVER stays out of it."""
    policy = "banned_destiny = 'bounce'\n"
    rcpts = ["bob@example.test", "carol@example.test",
             Recipient("dave@example.test", (("NOTIFY", "NEVER"),))]
    replies, _ = run(sink, policy, [BANNED], rcpts, sender="alice@example.org")
    assert ["DSN was sent" in r for r in replies] == [True, True, False], replies
    [dsn] = dsns(sink)
    assert b"Final-Recipient: rfc822; bob@example.test" in dsn.data
    assert b"Final-Recipient: rfc822; carol@example.test" in dsn.data
    assert b"dave@example.test" not in dsn.data
    assert "{BouncedInbound,NoBounceInbound,Quarantined}" in summary(caplog)


def test_a_dsn_to_a_utf8_sender_goes_out_with_smtputf8_and_8bitmime(sink):
    """Without SMTPUTF8 a next hop must refuse RCPT TO:<jörg@exämple.org> (Postfix:
    501 5.1.3), and the DSN was lost; its 8-bit parts need BODY=8BITMIME."""
    policy = '[policy.recipients."bouncer@example.test"]\nbanned_destiny = "bounce"\n'
    raw = RAW.replace(b"Subject: offer", "Subject: Grüße".encode())
    replies, _ = run(sink, policy, [BANNED], ["bouncer@example.test"],
                     sender="jörg@exämple.org", raw=raw,
                     mail_params=(("SMTPUTF8", None), ("BODY", "8BITMIME")))
    assert "DSN was sent" in replies[0], replies
    [dsn] = dsns(sink)
    assert dsn.recipients == ["jörg@exämple.org"]
    assert {tuple(p) for p in dsn.mail_params} >= {("SMTPUTF8", None), ("BODY", "8BITMIME")}
    assert b"report-type=global-delivery-status" in dsn.data


def test_dsn_to_a_utf8_sender_is_sent_with_smtputf8_in_rfc6533_form(sink):
    """SMTPUTF8 mail from a UTF-8 sender: the DSN goes to it with SMTPUTF8 (without it,
    an internationalised message without the extension, RFC 6531 3.5) and in RFC 6533's
    global forms, as Postfix's bounces of SMTPUTF8 mail."""
    policy = ('[policy.recipients."δοκιμή@example.test"]\nbanned_destiny = "bounce"\n'
              '[policy.recipients."carol@example.test"]\nbanned_lover = true\n')
    replies, _ = run(sink, policy, [BANNED], ["δοκιμή@example.test", "carol@example.test"],
                     sender="jürgen@example.org", mail_params=(("SMTPUTF8", None),))
    assert [r[:3] for r in replies] == ["250", "250"], replies
    [dsn] = dsns(sink)
    assert dsn.recipients == ["jürgen@example.org"]
    assert ("SMTPUTF8", None) in dsn.mail_params
    assert b"Content-Type: message/global-delivery-status" in dsn.data
    assert "Final-Recipient: utf-8; δοκιμή@example.test".encode() in dsn.data
    # the returned header section is ASCII here: text/rfc822-headers serves (RFC 6533
    # asks for message/global-headers when it holds UTF-8)
    assert b"Content-Type: text/rfc822-headers" in dsn.data


def test_dsn_deferred_by_the_next_hop_defers_before_any_copy_went_out(sink):
    """Over SMTP a 451 after delivering the passed copy would make Postfix's retry
    deliver it twice: the DSN goes first, and a deferred DSN defers everything."""
    policy = ('[policy.recipients."bouncer@example.test"]\nbanned_destiny = "bounce"\n'
              '[policy.recipients."carol@example.test"]\nbanned_lover = true\n')
    sink.behaviour.rcpt_reply = (lambda r: "451 4.3.0 try later" if r == "alice@example.org"
                                 else "250 2.1.5 Ok")
    replies, _ = run(sink, policy, [BANNED], ["bouncer@example.test", "carol@example.test"],
                     sender="alice@example.org")
    assert [r[:3] for r in replies] == ["451", "451"], replies
    assert sink.received == []
    sink.behaviour.rcpt_reply = (lambda r: "550 5.1.1 no such user"
                                 if r == "alice@example.org" else "250 2.1.5 Ok")
    replies, _ = run(sink, policy, [BANNED], ["bouncer@example.test", "carol@example.test"],
                     sender="alice@example.org")
    # amavis: a DSN refused for good is logged, the message is dealt with
    assert [r[:3] for r in replies] == ["250", "250"], replies
    assert list(copies(sink)) == ["carol@example.test"]


def test_faked_sender_virus_gets_no_dsn_even_for_a_recipient_blocked_otherwise(sink):
    policy = ("virus_destiny = 'bounce'\nbanned_destiny = 'bounce'\n"
              '[policy.recipients."bob@example.test"]\nbypass_virus_checks = true\n')
    replies, _ = run(sink, policy, [WORM, BANNED], ["bob@example.test"],
                     sender="alice@example.org")
    assert replies[0].startswith("250") and "no DSN" in replies[0], replies
    assert dsns(sink) == []


def test_quarantine_to_gets_the_held_copy(sink, caplog):
    """``quarantine_to`` (amavis's $virus_quarantine_to & co. as a mailbox): the held
    copy also goes to that address, from <>, with the envelope in front; when the next
    hop will not take it, the quarantine failed and the message is deferred."""
    policy = ('quarantine_to = "quar@example.test"\n'
              '[policy.recipients."lover@example.test"]\nvirus_lover = true\n')
    replies, q = run(sink, policy, [WORM], ["bob@example.test", "lover@example.test"],
                     sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250", "250"]
    assert q.stored[0]["recipients"] == ["bob@example.test"]
    got = copies(sink)
    assert sorted(got) == ["lover@example.test", "quar@example.test"]
    [held] = [m for m in sink.received if m.recipients == ["quar@example.test"]]
    assert held.sender == "<>"
    assert held.data.startswith(b"X-Quarantine-ID: <abcdefghijkl>\r\n"
                                b"X-Envelope-From: <alice@example.org>\r\n"
                                b"X-Envelope-To: <bob@example.test>\r\n"
                                b"X-Envelope-To-Blocked: <bob@example.test>\r\n")
    assert held.data.endswith(RAW)
    sink.received.clear()
    sink.behaviour.rcpt_reply = (lambda r: "452 4.2.2 mailbox full" if r.startswith("quar")
                                 else "250 2.1.5 Ok")
    replies, q = run(sink, policy, [WORM], ["bob@example.test", "lover@example.test"],
                     sender="alice@example.org")
    assert [r[:3] for r in replies] == ["451", "451"], replies
    assert sink.received == []
    assert q.stored == []  # the retry stores it again: one held copy, not one per attempt


def test_a_deferred_message_leaves_no_held_copy_per_attempt(sink, caplog):
    """Stored for bob (virus, discarded), then carol's delivery is deferred: over SMTP
    the whole message is 451 and Postfix retries, which stores it again under a new
    mail_id; the copy of this attempt is removed, and no notice goes out yet."""
    policy = 'notify_admin = { virus = "admin@example.test" }\n' \
             '[policy.recipients."carol@example.test"]\nvirus_lover = true\n'
    sink.behaviour.rcpt_reply = (lambda r: "451 4.3.0 try later" if r.startswith("carol")
                                 else "250 2.1.5 Ok")
    replies, q = run(sink, policy, [WORM], ["bob@example.test", "carol@example.test"],
                     sender="alice@example.org")
    assert aggregate(replies).startswith("451 4.3.0"), replies  # Postfix retries both
    assert q.stored == [] and sink.received == []
    line = summary(caplog)
    assert "Quarantined" not in line and "quarantine:" not in line, line
    assert "quarantined copy a/x-abcdefghijkl.gz removed" in caplog.text
    sink.behaviour.rcpt_reply = lambda r: "250 2.1.5 Ok"
    caplog.clear()
    replies, q = run(sink, policy, [WORM], ["bob@example.test", "carol@example.test"],
                     sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250", "250"] and len(q.stored) == 1
    assert sorted(copies(sink)) == ["admin@example.test", "carol@example.test"]


def test_no_dsn_for_a_next_hop_refusal_of_spam_above_the_dsn_cutoff(sink, caplog):
    """amavis's DSN rules (cutoff level, faked-sender viruses, bulk mail) hold for every
    failure it reports, the next hop's refusals too: spam from a forged sender that
    passed (Debian: spam_destiny pass) and that the next hop refused for one
    recipient must not send backscatter; a clean message's refusal still gets its DSN."""
    sink.behaviour.rcpt_reply = (lambda r: "550 5.1.1 no such user"
                                 if r == "bob@example.test" else "250 2.1.5 Ok")
    replies, _ = run(sink, "block_senders = ['@spam.example']\n", [],
                     ["bob@example.test", "carol@example.test"])
    assert [r[:3] for r in replies] == ["250", "250"], replies
    assert "no DSN sent" in replies[0] and dsns(sink) == []
    assert list(copies(sink)) == ["carol@example.test"]
    replies, _ = run(sink, "", [], ["bob@example.test", "carol@example.test"],
                     sender="alice@example.org")
    assert "DSN was sent" in replies[0] and len(dsns(sink)) == 1


def test_dsn_for_a_next_hop_refusal_refused_for_good_does_not_defer(sink, caplog):
    """The next hop refuses one recipient of a clean message for good and takes the
    other; the DSN for the refused one is refused for good too. amavis logs "UNABLE TO
    SEND DSN" and is done; deferring would deliver carol's copy again at every retry
    (for days: the DSN is refused each time)."""
    sink.behaviour.rcpt_reply = (lambda r: "550 5.1.1 no such user"
                                 if r in ("bob@example.test", "alice@example.org")
                                 else "250 2.1.5 Ok")
    with caplog.at_level(logging.WARNING, logger="scanner"):
        replies, _ = run(sink, "", [], ["bob@example.test", "carol@example.test"],
                         sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250", "250"], replies
    assert "DSN refused" in replies[0]
    assert list(copies(sink)) == ["carol@example.test"]
    assert "DSN to <alice@example.org> refused" in caplog.text

"""Recipients of one message with different policies, through the real Processor and a
next hop (the test sink), against amavis's behaviour: which category blocks whom (lovers,
bypass, per-recipient levels), the replies over SMTP and LMTP, the DSN, the headers and
the subject tag of each copy, and the log line."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from scanner.config import loads
from scanner.pipeline.processor import Listener, Processor
from scanner.reinject.deliver import NextHop
from scanner.scores import load_scores
from scanner.smtp.handler import aggregate
from scanner.task import ClientInfo, Envelope, Hit, Recipient, Task
from scanner.testing.sink import Sink

EICAR = Hit("CLAMAV_VIRUS", options=("Eicar-Signature",), source="clamav")
WORM = Hit("CLAMAV_VIRUS", options=("Win.Worm.Mydoom",), source="clamav")
BANNED = Hit("BANNED_FILE", part="P=p003,L=1/2,T=exe-ms,N=invoice.pdf.exe", source="banned")
BADH = Hit("BAD_HEADER_CONTROL", options=("Subject: control character",), source="badheader")
ENCRYPTED = Hit("DECODE_ENCRYPTED", source="decode")
BAYES = Hit("BAYES_99", source="bayes")
RAW = (b"From: promo@spam.example\r\nTo: bob@example.test\r\nSubject: offer\r\n"
       b"Message-ID: <mix@spam.example>\r\n\r\nthe body BODYMARK\r\n")


class FakeCheck:
    """A check that reports fixed hits (kind decides which bypass flag drops them)."""

    def __init__(self, name: str, kind: str, hits: list[Hit]) -> None:
        self.name, self.kind, self._hits = name, kind, hits

    async def run(self, task: Task) -> list[Hit]:
        return [h for h in self._hits if h.source == self.name]


class FakeQuarantine:
    def __init__(self) -> None:
        self.stored: list[dict] = []

    def store(self, **kw: Any) -> Any:
        self.stored.append(kw)
        return SimpleNamespace(relative_path=f"{kw['mail_id'][0]}/x-{kw['mail_id']}.gz")

    def delete(self, mail_id: str) -> None:
        self.stored = [kw for kw in self.stored if kw["mail_id"] != mail_id]


def run(sink: Sink, policy: str, hits: list[Hit], rcpts: list[str | Recipient],
        sender: str = "promo@spam.example", protocol: str = "ESMTP", raw: bytes = RAW,
        mail_params: tuple = (), deliver: Any = None, extra_checks: tuple = ()
        ) -> tuple[list[str], FakeQuarantine]:
    config = loads('[checks]\nenabled = []\n[quarantine]\nampdp_socket = ""\n'
                   "[policy]\nlocal_domains = ['example.test']\n" + policy, "t.toml")
    kinds = {"clamav": "virus", "banned": "banned", "badheader": "header", "bayes": "spam",
             "decode": "virus"}
    checks = [FakeCheck(n, k, hits) for n, k in kinds.items() if n != "decode"]
    checks.append(FakeCheck("decode_hits", "virus", [
        Hit(h.symbol, h.factor, h.options, h.part, "decode_hits") for h in hits
        if h.source == "decode"]))
    checks += extra_checks
    quarantine = FakeQuarantine()

    async def inline(func: Any, *args: Any) -> Any:
        return func(*args)

    hop = NextHop("127.0.0.1", sink.port, False, 2, 5, "scanner.test", True)
    proc = Processor(config, checks, load_scores(), hop, "scanner.test", run_cpu=inline,
                     quarantine=quarantine)
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=raw,
                envelope=Envelope(sender, tuple(r if isinstance(r, Recipient) else Recipient(r)
                                                for r in rcpts), mail_params=mail_params),
                client=ClientInfo(addr="192.0.2.7", port="4000"))

    async def go() -> list[str]:
        try:
            return await proc.handle(task, Listener(10024, protocol, ""), deliver)
        finally:
            await proc._pool.close()

    return asyncio.run(go()), quarantine


def copies(sink: Sink) -> dict[str, bytes]:
    """What the next hop got, by recipient (our DSNs left out)."""
    return {r: m.data for m in sink.received if m not in dsns(sink) for r in m.recipients}


def dsns(sink: Sink) -> list[Any]:
    return [m for m in sink.received
            if m.sender == "<>" and b"Content-Type: multipart/report;" in m.data]


def head(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The message's summary lines: two (Passed, then Blocked) when its recipients had
    different outcomes."""
    return [r.getMessage() for r in caplog.records if "mail_id: abcdefghijkl" in r.getMessage()]


def summary(caplog: pytest.LogCaptureFixture) -> str:
    """The message's one summary line (its recipients all had one outcome)."""
    [line] = summaries(caplog)
    return line


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scanner")


def test_virus_lover_gets_the_virus_the_other_recipient_does_not(sink, caplog):
    policy = '[policy.recipients."lover@example.test"]\nvirus_lover = true\n'
    replies, q = run(sink, policy, [EICAR], ["lover@example.test", "bob@example.test"],
                     sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250", "250"]
    got = copies(sink)
    assert list(got) == ["lover@example.test"]
    assert b"X-Amavis-Alert: INFECTED, message contains virus: Eicar-Signature" in got[
        "lover@example.test"]
    assert b"X-Quarantine-ID: <abcdefghijkl>" in got["lover@example.test"]
    assert q.stored[0]["recipients"] == ["bob@example.test"]
    assert q.stored[0]["category"] == "VIRUS"
    passed, blocked = summaries(caplog)
    # amavis: the lover's copy carries an INFECTED alert, so it is RelayedTagged
    actions = "{DiscardedInbound,RelayedTaggedInbound,Quarantined}"
    assert f"Passed INFECTED (Eicar-Signature) {actions}" in passed, passed
    assert "> -> <lover@example.test>, quarantine: " in passed, passed
    assert f"Blocked INFECTED (Eicar-Signature) {actions}" in blocked, blocked
    assert "> -> <bob@example.test>, quarantine: " in blocked, blocked


def test_a_lover_is_still_blocked_by_a_lower_category_he_does_not_love(sink, caplog):
    """amavis walks the recipient's categories from the top: the first one whose destiny
    blocks and that he does not love decides (Amavis.pm, 'determine true reason for
    blocking'). A virus lover does not get a virus that is also spam he discards."""
    policy = ("block_senders = ['@spam.example']\nspam_destiny = 'discard'\n"
              '[policy.recipients."lover@example.test"]\nvirus_lover = true\n')
    replies, q = run(sink, policy, [EICAR], ["lover@example.test"])
    assert replies[0].startswith("250") and "SPAM" in replies[0], replies
    assert copies(sink) == {}
    assert q.stored and q.stored[0]["category"] == "SPAM"
    assert "Blocked SPAM {DiscardedInbound,Quarantined}" in summary(caplog)


def test_spam_over_the_kill_level_of_one_recipient_only(sink, caplog):
    policy = ("spam_destiny = 'discard'\n"
              '[policy.recipients."bob@example.test"]\nkill_level = 5.0\ntag2_level = 5.0\n')
    replies, q = run(sink, policy, [BAYES], ["bob@example.test", "carol@example.test"])
    assert [r[:3] for r in replies] == ["250", "250"]
    got = copies(sink)
    assert list(got) == ["carol@example.test"]
    carol = head(got["carol@example.test"])
    assert b"X-Spam-Flag: NO" in carol and b"Subject: offer" in carol
    assert b"X-Spam-Status: No, score=5.5 tagged_above=2 required=6.31" in carol
    assert q.stored[0]["recipients"] == ["bob@example.test"]
    passed, blocked = summaries(caplog)  # both name the blocking category, as amavis's
    assert "Passed SPAM {" in passed and "-> <carol@example.test>, " in passed, passed
    assert "Blocked SPAM {" in blocked and "-> <bob@example.test>, " in blocked, blocked


def test_banned_lover_and_bad_header_bypass_get_their_own_alerts(sink):
    """amavis adds an X-Amavis-Alert for each of VIRUS, BANNED and BAD HEADER a passed
    copy holds; a recipient bypassing header checks has no BAD-HEADER category."""
    policy = ('[policy.recipients."lover@example.test"]\nbanned_lover = true\n'
              '[policy.recipients."bypass@example.test"]\nbanned_lover = true\n'
              "bypass_header_checks = true\n")
    replies, _ = run(sink, policy, [BANNED, BADH], [
        "lover@example.test", "bypass@example.test", "bob@example.test"],
        sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250", "250", "250"]
    got = copies(sink)
    assert sorted(got) == ["bypass@example.test", "lover@example.test"]  # bob: banned
    lover, bypass = head(got["lover@example.test"]), head(got["bypass@example.test"])
    alert = b"X-Amavis-Alert: BANNED, message contains\r\n\tP=p003,L=1/2,T=exe-ms,N=invoice.pdf.exe"
    assert alert in lover and alert in bypass
    assert b"X-Amavis-Alert: BAD HEADER SECTION, Subject: control character" in lover
    assert b"BAD HEADER" not in bypass


def test_bad_header_bounce_from_the_null_sender_passes(sink, caplog):
    """amavis: a D_BOUNCE for BAD-HEADER mail from <> or bulk mail becomes D_PASS (its
    DSN would be suppressed); it must not silently vanish."""
    policy = "bad_header_destiny = 'bounce'\n"
    replies, q = run(sink, policy, [BADH], ["bob@example.test"], sender="")
    assert replies[0].startswith("250")
    assert list(copies(sink)) == ["bob@example.test"] and not q.stored
    assert "Passed BAD-HEADER {RelayedInbound}" in summary(caplog)
    replies, q = run(sink, policy, [BADH], ["carol@example.test"],
                     raw=RAW.replace(b"Subject:", b"Precedence: list\r\nSubject:"))
    assert "carol@example.test" in copies(sink) and not dsns(sink)


def test_unchecked_subject_tag_only_for_local_recipients(sink, caplog):
    replies, _ = run(sink, "", [ENCRYPTED], ["bob@example.test", "ext@remote.test"],
                     sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250", "250"]
    got = copies(sink)
    assert b"Subject: ***UNCHECKED*** offer" in head(got["bob@example.test"])
    assert b"Subject: offer" in head(got["ext@remote.test"])
    # per recipient, as amavis: bob's copy is local and tagged, the other remote
    assert "Passed UNCHECKED-ENCRYPTED {RelayedOpenRelay,RelayedTaggedInbound}" \
        in summary(caplog)


def test_address_extension_replaces_an_existing_one(sink):
    policy = "addr_extension_spam = 'spam'\nblock_senders = ['@spam.example']\n"
    replies, _ = run(sink, policy, [], ["bob+work@example.test", "ext@remote.test"])
    assert [r[:3] for r in replies] == ["250", "250"]
    assert sorted(copies(sink)) == ["bob+spam@example.test", "ext@remote.test"]


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
                                b"X-Envelope-To: <bob@example.test>\r\n")
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


def test_passed_virus_gets_amavis_infected_subject_tag_before_the_spam_tag(sink):
    """amavis's %subject_tag_maps_by_ccat: VIRUS ('***INFECTED*** ') comes first, for
    local recipients only; a banned lover's copy has no tag of its own (undef)."""
    policy = ('block_senders = ["@spam.example"]\n'
              '[policy.recipients."lover@example.test"]\nvirus_lover = true\nspam_lover = true\n'
              '[policy.recipients."ext@remote.test"]\nvirus_lover = true\nspam_lover = true\n')
    run(sink, policy, [EICAR], ["lover@example.test", "ext@remote.test"])
    got = copies(sink)
    assert b"Subject: ***INFECTED*** offer\r\n" in head(got["lover@example.test"])
    assert b"Subject: offer\r\n" in head(got["ext@remote.test"])
    sink.received.clear()
    run(sink, '[policy.recipients."lover@example.test"]\nbanned_lover = true\n', [BANNED],
        ["lover@example.test"], sender="alice@example.org")
    assert b"Subject: offer\r\n" in head(copies(sink)["lover@example.test"])


def test_subject_tag_macros_and_the_tag_level_tag(sink):
    """amavis expands _SCORE_, _REQD_, _YESNO_ ... in subject tags
    ('***SPAM(_SCORE_)*** ' is a common site setting); $sa_spam_subject_tag1 tags mail
    from tag_level up."""
    policy = ('subject_tag2 = "[_YESNOCAPS_ _SCORE_/_REQD_ _MAILID_ _FOO_] "\n'
              'subject_tag = "[maybe _SCORE_] "\n'
              '[policy.recipients."bob@example.test"]\ntag2_level = 5.0\nkill_level = 9.0\n')
    run(sink, policy, [BAYES], ["bob@example.test", "low@example.test"])  # BAYES_99: 5.5
    got = copies(sink)
    bob, low = head(got["bob@example.test"]), head(got["low@example.test"])
    assert b"Subject: [YES 5.5/5 abcdefghijkl _FOO_] offer\r\n" in bob, bob
    assert b"Subject: [maybe 5.5] offer\r\n" in low, low


def test_address_extensions_per_category_as_amavis(sink):
    """amavis's %addr_extension_maps_by_ccat: the highest of virus, banned, spam and bad
    header present decides, even with an empty extension; no delimiter, no extension."""
    policy = ('addr_extension_virus = "virus"\naddr_extension_spam = "spam"\n'
              'addr_extension_bad_header = "badh"\nblock_senders = ["@spam.example"]\n'
              "virus_destiny = 'pass'\nbad_header_destiny = 'pass'\n"
              '[policy.recipients."nov@example.test"]\naddr_extension_virus = ""\n'
              '[policy.recipients."nodelim@example.test"]\nrecipient_delimiter = ""\n')
    run(sink, policy, [EICAR, BADH], ["bob+work@example.test", "nov@example.test",
                                      "nodelim@example.test"])
    assert sorted(copies(sink)) == ["bob+virus@example.test", "nodelim@example.test",
                                    "nov@example.test"]
    sink.received.clear()
    run(sink, policy, [BADH], ["bob@example.test"], sender="alice@example.org")
    assert list(copies(sink)) == ["bob+badh@example.test"]


"""Recipients of one message with different policies, through the real Processor and a
next hop (the test sink), against amavis's behaviour: which category blocks whom (lovers,
bypass, per-recipient levels), the headers, the subject tag and the address extension
of each copy, and the log line. The replies, DSNs and held copies of such a message are
in test_recipient_replies.py."""

from __future__ import annotations

import logging

import pytest

from tests.policy.recipient_mix import (
    BADH,
    BANNED,
    BAYES,
    EICAR,
    ENCRYPTED,
    RAW,
    copies,
    dsns,
    head,
    run,
    summaries,
    summary,
)


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
    # neither the envelope sender nor the From address is on block_senders: no spam
    run(sink, policy, [BADH], ["bob@example.test"], sender="alice@example.org",
        raw=RAW.replace(b"From: promo@spam.example", b"From: alice@example.org"))
    assert list(copies(sink)) == ["bob+badh@example.test"]

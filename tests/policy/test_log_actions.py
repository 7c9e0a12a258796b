"""The actions of the summary line as amavis 2.13 writes them: ``RelayedTagged`` for a
copy our edits marked, each recipient's own direction, statuses sorted by name, then
``Quarantined``; ``TempFailed`` spelt as amavis does."""

from __future__ import annotations

import logging

import pytest

from tests.policy.test_recipient_mix import BAYES, WORM, run, summary

SPAM = "kill_level = 2.0\ntag2_level = 2.0\n"


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scanner")


@pytest.mark.parametrize(("policy", "actions"), [
    ("", "{RelayedInbound}"),                         # ham with score headers only
    (SPAM, "{RelayedTaggedInbound}"),                 # X-Spam-Flag: YES, Subject tag
    (SPAM + "subject_tag2 = ''\n", "{RelayedTaggedInbound}"),  # the flag alone
    (SPAM + "subject_tag2 = ''\nspam_headers = false\n", "{RelayedInbound}"),
    (SPAM + "subject_tag2 = ''\nspam_headers = false\naddr_extension_spam = 'spam'\n",
     "{RelayedTaggedInbound}"),                       # only the address changed
])
def test_relayed_tagged_when_our_edits_mark_the_copy(sink, caplog, policy, actions):
    replies, _ = run(sink, policy, [BAYES], ["bob@example.test"])
    assert [r[:3] for r in replies] == ["250"]
    assert f" {actions}, " in summary(caplog), summary(caplog)


def test_each_recipient_has_its_own_direction_and_statuses_are_sorted(sink, caplog):
    policy = ('[policy.recipients."carol@example.test"]\nvirus_lover = true\n')
    run(sink, policy, [WORM], ["bob@example.test", "carol@example.test", "x@remote.test"])
    line = summary(caplog)
    assert ("{DiscardedInbound,DiscardedOpenRelay,RelayedTaggedInbound,Quarantined}"
            in line), line


def test_tempfailed_is_spelt_as_amavis_writes_it(sink, caplog):
    sink.behaviour.rcpt_reply = lambda r: "451 4.3.0 try later"
    replies, _ = run(sink, "", [], ["bob@example.test"])
    assert replies[0].startswith("451")
    assert "Blocked CLEAN {TempFailedInbound}" in summary(caplog)


REJECTER = ('[policy.recipients."rejecter@example.test"]\nspam_destiny = "reject"\n'
            "block_senders = ['@spam.example']\n")


def test_a_reject_among_passed_recipients_is_logged_as_its_dsn_only(sink, caplog):
    """Over SMTP a recipient rejected by policy next to a passed one gets 250 and a DSN
    (or none): amavis 2.13 counts one status per recipient from the reply Postfix got,
    D_REJECT with 2xx is ``Bounced`` or ``NoBounce``, never ``Rejected`` too."""
    replies, _ = run(sink, REJECTER, [], ["rejecter@example.test", "carol@example.test"])
    assert [r[:3] for r in replies] == ["250", "250"], replies
    assert "{NoBounceInbound,RelayedInbound,Quarantined}" in summary(caplog), summary(caplog)


def test_a_reject_among_passed_recipients_with_a_dsn_is_bounced(sink, caplog):
    replies, _ = run(sink, REJECTER.replace("block_senders = ['@spam.example']\n",
                                            "kill_level = 0.5\n"),
                     [BAYES], ["rejecter@example.test", "carol@example.test"],
                     sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250", "250"], replies
    assert "{BouncedInbound,Relayed" in summary(caplog), summary(caplog)
    assert "Rejected" not in summary(caplog)


def test_a_message_deferred_as_a_whole_over_smtp_is_tempfailed_for_every_recipient(
        sink, caplog):
    """One 451 for the message: amavis counts the per-message reply for every recipient
    (TempFailed), not Relayed for a copy Postfix will have sent again. Here the DSN to
    the sender is deferred after the passed copy went out (amavis defers then too)."""
    policy = REJECTER.replace("block_senders = ['@spam.example']\n", "kill_level = 0.5\n")

    def refuse_dsn(rcpt: str) -> str:
        return "452 4.2.2 Mailbox full" if rcpt == "alice@example.org" else "250 2.1.5 Ok"
    sink.behaviour.rcpt_reply = refuse_dsn
    replies, _ = run(sink, policy, [BAYES], ["rejecter@example.test", "carol@example.test"],
                     sender="alice@example.org")
    assert [r[:3] for r in replies] == ["451", "451"], replies
    assert " {TempFailedInbound}, " in summary(caplog), summary(caplog)
    assert summary(caplog).startswith("(00001-01) Blocked"), summary(caplog)

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

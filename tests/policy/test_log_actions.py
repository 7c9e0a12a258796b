"""The actions of the summary line as amavis 2.13 writes them: ``RelayedTagged`` for a
copy our edits marked, each recipient's own direction, statuses sorted by name, then
``Quarantined``; ``TempFailed`` spelt as amavis does."""

from __future__ import annotations

import logging

import pytest

from tests.policy.recipient_mix import BAYES, WORM, run, summaries, summary

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
    for line in summaries(caplog):  # carol's Passed line, then the Blocked one
        assert ("{DiscardedInbound,DiscardedOpenRelay,RelayedTaggedInbound,Quarantined}"
                in line), line


def test_tempfailed_is_spelt_as_amavis_writes_it(sink, caplog):
    sink.behaviour.rcpt_reply = lambda r: "451 4.3.0 try later"
    replies, _ = run(sink, "", [], ["bob@example.test"])
    assert replies[0].startswith("451")
    # the next hop deferred it: amavis's blocking category is then MTA-BLOCKED (CC_MTA)
    assert "Blocked MTA-BLOCKED {TempFailedInbound}" in summary(caplog)


REJECTER = ('[policy.recipients."rejecter@example.test"]\nspam_destiny = "reject"\n'
            "block_senders = ['@spam.example']\n")


def test_a_reject_among_passed_recipients_is_logged_as_its_dsn_only(sink, caplog):
    """Over SMTP a recipient rejected by policy next to a passed one gets 250 and a DSN
    (or none): amavis 2.13 counts one status per recipient from the reply Postfix got,
    D_REJECT with 2xx is ``Bounced`` or ``NoBounce``, never ``Rejected`` too."""
    replies, _ = run(sink, REJECTER, [], ["rejecter@example.test", "carol@example.test"])
    assert [r[:3] for r in replies] == ["250", "250"], replies
    lines = summaries(caplog)
    assert len(lines) == 2, lines
    assert all("{NoBounceInbound,RelayedInbound,Quarantined}" in line for line in lines)


def test_a_reject_among_passed_recipients_with_a_dsn_is_bounced(sink, caplog):
    replies, _ = run(sink, REJECTER.replace("block_senders = ['@spam.example']\n",
                                            "kill_level = 0.5\n"),
                     [BAYES], ["rejecter@example.test", "carol@example.test"],
                     sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250", "250"], replies
    lines = summaries(caplog)
    assert len(lines) == 2, lines
    assert all("{BouncedInbound,Relayed" in line and "Rejected" not in line
               for line in lines), lines


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


DISCARD = "spam_destiny = 'discard'\nblock_senders = ['@spam.example']\n"
LOVER = DISCARD + '[policy.recipients."lover@example.test"]\nspam_lover = true\n'


def _fields(line: str) -> list[str]:
    """A summary line's fields after the recipients, without queued_as."""
    return [f for f in line.split(" -> ", 1)[1].split(", ")[1:]
            if not f.startswith("queued_as: ")]


@pytest.mark.parametrize("quarantine", [True, False])
def test_passed_and_blocked_recipients_get_a_line_each_as_amavis(sink, caplog, quarantine):
    """amavis's $log_templ: ``Passed`` for the recipients the next hop took (``%D``), then
    ``Blocked`` for the others (``%O``), each with its own recipients; the category,
    actions and every other field repeated, ``queued_as`` on the Passed line only. One
    line listed all four recipients as Blocked, so log parsers counted no passed mail."""
    policy = ("" if quarantine else "quarantine = []\n") + LOVER
    replies, q = run(sink, policy, [], ["dave@example.test", "lover@example.test",
                                        "x@remote.test", "carol@example.test"])
    assert [r[:3] for r in replies] == ["250"] * 4, replies
    passed, blocked = summaries(caplog)
    actions = "{DiscardedInbound,DiscardedOpenRelay,RelayedTaggedInbound"
    actions += ",Quarantined}" if quarantine else "}"
    assert passed.startswith(f"(00001-01) Passed SPAM {actions}, [192.0.2.7]:4000 "
                             "[192.0.2.7] <promo@spam.example> -> <lover@example.test>, "), passed
    assert blocked.startswith(f"(00001-01) Blocked SPAM {actions}, [192.0.2.7]:4000 "
                              "[192.0.2.7] <promo@spam.example> -> <dave@example.test>,"
                              "<x@remote.test>,<carol@example.test>, "), blocked
    assert ", queued_as: SINK1, " in passed and "queued_as" not in blocked
    assert _fields(passed) == _fields(blocked)
    assert ("quarantine: a/x-abcdefghijkl.gz" in blocked) is quarantine
    assert bool(q.stored) is quarantine


@pytest.mark.parametrize(("policy", "verb"), [
    ("", "Passed CLEAN {RelayedInbound}"),
    (DISCARD, "Blocked SPAM {DiscardedInbound,Quarantined}"),
])
def test_recipients_with_one_outcome_share_one_line(sink, caplog, policy, verb):
    replies, _ = run(sink, policy, [], ["bob@example.test", "carol@example.test"],
                     sender="alice@spam.example")
    [line] = summaries(caplog)
    assert verb in line and "-> <bob@example.test>,<carol@example.test>, " in line, line


def test_a_recipient_tempfailed_over_lmtp_is_on_the_blocked_line(sink, caplog):
    """LMTP answers per recipient: the one the next hop took is Passed, the one it
    deferred (451, Postfix retries it) Blocked, as amavis's %D/%O lists."""
    sink.behaviour.rcpt_reply = (lambda r: "451 4.3.0 try later" if r == "carol@example.test"
                                 else "250 2.1.5 Ok")
    replies, _ = run(sink, "", [], ["bob@example.test", "carol@example.test"],
                     sender="alice@example.org", protocol="LMTP")
    assert [r[:3] for r in replies] == ["250", "451"], replies
    passed, blocked = summaries(caplog)  # both name the message's blocking category
    assert passed.startswith("(00001-01) Passed MTA-BLOCKED {RelayedInbound,"
                             "TempFailedInbound}, "), passed
    assert "> -> <bob@example.test>, " in passed and "queued_as: " in passed, passed
    assert blocked.startswith("(00001-01) Blocked MTA-BLOCKED {RelayedInbound,"
                              "TempFailedInbound}, "), blocked
    assert "> -> <carol@example.test>, " in blocked and "queued_as" not in blocked, blocked


def test_a_recipient_the_next_hop_refused_is_on_the_blocked_line(sink, caplog):
    """Over SMTP a recipient the next hop refused (5xx) next to an accepted one gets 250
    from us and a DSN: its copy was not delivered, so it is on the Blocked line (amavis:
    D_PASS with a 5xx from the next hop is in %O, not %D)."""
    sink.behaviour.rcpt_reply = (lambda r: "550 5.1.1 no such user"
                                 if r == "carol@example.test" else "250 2.1.5 Ok")
    replies, _ = run(sink, "", [], ["bob@example.test", "carol@example.test"],
                     sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250", "250"], replies
    passed, blocked = summaries(caplog)
    assert passed.startswith("(00001-01) Passed MTA-BLOCKED {BouncedInbound,"
                             "RelayedInbound}, "), passed
    assert "> -> <bob@example.test>, " in passed, passed
    assert blocked.startswith("(00001-01) Blocked MTA-BLOCKED {BouncedInbound,"
                              "RelayedInbound}, "), blocked
    assert "> -> <carol@example.test>, " in blocked, blocked


class _Recorder:
    """A check that wants to know whom the message was delivered to (as pen pals)."""

    name, kind = "recorder", "other"

    def __init__(self) -> None:
        self.delivered: list[list[str]] = []

    async def run(self, task: object) -> list:
        return []

    def after_delivery(self, task: object, recipients: list[str]) -> None:
        self.delivered.append(recipients)


def test_after_delivery_hears_only_of_recipients_the_next_hop_took(sink):
    """A recipient the next hop refused gets 250 and a DSN over SMTP; pen pals were told
    it had been sent mail (its 250 and a pass destiny were taken for a delivery)."""
    sink.behaviour.rcpt_reply = (lambda r: "550 5.1.1 no such user"
                                 if r == "carol@example.test" else "250 2.1.5 Ok")
    recorder = _Recorder()
    replies, _ = run(sink, "", [], ["bob@example.test", "carol@example.test"],
                     sender="alice@example.org", extra_checks=(recorder,))
    assert [r[:3] for r in replies] == ["250", "250"], replies
    assert recorder.delivered == [["bob@example.test"]]

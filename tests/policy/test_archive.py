"""``archive_to`` (amavis's archive_quarantine_to as a mailbox): a copy of every message,
whatever its verdict, taken by the next hop before anything else happens to it."""

from __future__ import annotations

import logging

import pytest

from tests.policy.test_recipient_mix import RAW, WORM, copies, run, summary

ARCHIVE = 'archive_to = "archive@example.test"\n'


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scanner")


def _archived(sink) -> list:
    return [m for m in sink.received if m.recipients == ["archive@example.test"]]


def test_every_message_is_archived_clean_and_blocked(sink, caplog):
    replies, q = run(sink, ARCHIVE, [], ["bob@example.test"], sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250"]
    [copy] = _archived(sink)
    assert copy.sender == "<>"
    assert copy.data.startswith(b"X-Quarantine-ID: <abcdefghijkl>\r\n"
                                b"X-Envelope-From: <alice@example.org>\r\n"
                                b"X-Envelope-To: <bob@example.test>\r\n")
    assert copy.data.endswith(RAW)
    assert "bob@example.test" in copies(sink)
    sink.received.clear()
    replies, q = run(sink, ARCHIVE, [WORM], ["bob@example.test"], sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250"] and len(q.stored) == 1  # discarded, held
    assert len(_archived(sink)) == 1 and "bob@example.test" not in copies(sink)


def test_one_copy_per_archive_address_naming_its_recipients(sink):
    policy = ARCHIVE + ('[policy.recipients."@other.test"]\n'
                        'archive_to = "archive@other.test"\n')
    run(sink, policy, [], ["bob@example.test", "carol@example.test", "dan@other.test"])
    got = {tuple(m.recipients): m.data for m in sink.received if m.sender == "<>"}
    assert sorted(got) == [("archive@example.test",), ("archive@other.test",)]
    assert b"X-Envelope-To: <bob@example.test>, <carol@example.test>\r\n" \
        in got[("archive@example.test",)]
    assert b"X-Envelope-To: <dan@other.test>\r\n" in got[("archive@other.test",)]


@pytest.mark.parametrize("protocol", ["ESMTP", "LMTP"])
def test_an_archive_copy_not_taken_defers_before_anything_is_delivered(sink, caplog,
                                                                       protocol):
    policy = ARCHIVE + '[policy.recipients."carol@example.test"]\narchive_to = ""\n'
    sink.behaviour.rcpt_reply = (lambda r: "452 4.2.2 archive full"
                                 if r.startswith("archive") else "250 2.1.5 Ok")
    replies, q = run(sink, policy, [WORM], ["bob@example.test", "carol@example.test"],
                     protocol=protocol)
    if protocol == "ESMTP":  # one reply for the message: nothing delivered, nothing held
        assert [r[:3] for r in replies] == ["451", "451"], replies
        assert sink.received == [] and q.stored == []
    else:  # per recipient: carol (no archive) is dealt with, bob is retried
        assert [r[:3] for r in replies] == ["451", "250"], replies
        assert q.stored[0]["recipients"] == ["carol@example.test"]
    assert "archiving to <archive@example.test> failed" in caplog.text
    assert "Tempfailed" in summary(caplog)

"""Copies a site keeps: ``archive_to`` (amavis's archive_quarantine_to as a mailbox: every
message, whatever its verdict, taken by the next hop before anything else happens to it),
``archive_directory`` (amavis's local: archive: the same, written to a file), passed mail
in the quarantine (``quarantine_passed``, ``clean`` too) and amavis's spam cutoffs for the
quarantine and admin notices."""

from __future__ import annotations

import email
import email.policy
import logging

import pytest

from scanner.quarantine import envelope, files
from tests.policy.recipient_mix import BADH, BAYES, RAW, WORM, copies, run, summary

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
    assert "TempFailed" in summary(caplog)


SPAM_LEVELS = "kill_level = 2.0\ntag2_level = 2.0\nspam_destiny = 'discard'\n"


@pytest.mark.parametrize(("extra", "kept"), [
    ("", True),                                           # no cutoff: amavis keeps all
    ("spam_quarantine_cutoff_level = 6.0\n", True),       # BAYES_99 scores 5.5
    ("spam_quarantine_cutoff_level = 5.5\n", False),      # at the cutoff: not kept
    ("spam_quarantine_cutoff_level = 50\nblock_senders = ['@spam.example']\n", False),
])
def test_spam_quarantine_cutoff_level(sink, caplog, extra, kept):
    """amavis's $sa_quarantine_cutoff_level: spam at or above it, or from a blocked
    sender, is discarded as its destiny says but not kept in the quarantine."""
    replies, q = run(sink, SPAM_LEVELS + extra, [BAYES], ["bob@example.test"])
    assert [r[:3] for r in replies] == ["250"] and copies(sink) == {}
    assert len(q.stored) == (1 if kept else 0)
    line = summary(caplog)
    assert "Blocked SPAM {Discarded" in line, line
    assert ("Quarantined" in line) is kept, line


@pytest.mark.parametrize(("destiny", "cutoff", "notice"), [
    ("discard", "", "A message was blocked as SPAM."),
    ("pass", "", "A message was delivered as SPAM."),
    ("pass", "spam_notify_admin_cutoff_level = 5.5\n", None),
])
def test_spam_admin_notice_says_what_happened_and_honours_its_cutoff(sink, destiny,
                                                                      cutoff, notice):
    """amavis notifies the spam admin whatever the destiny (the notice must not call
    delivered spam blocked) and not at or above @spam_notifyadmin_cutoff_level_maps."""
    policy = (f"kill_level = 2.0\ntag2_level = 2.0\nspam_destiny = '{destiny}'\n"
              f'notify_admin = {{ spam = "admin@example.test" }}\n{cutoff}')
    replies, _ = run(sink, policy, [BAYES], ["bob@example.test"])
    assert [r[:3] for r in replies] == ["250"]
    got = copies(sink).get("admin@example.test")
    if notice is None:
        assert got is None
    else:
        assert got is not None and notice.encode() in got, got


def test_admin_notice_about_mail_from_a_utf8_sender_asks_for_smtputf8(sink):
    """The notice names the sender in its text (and, encoded, in its Subject): a UTF-8
    address there needs SMTPUTF8 (RFC 6532/6531); it was sent without it, as the
    recipient notice was not."""
    policy = ("kill_level = 2.0\ntag2_level = 2.0\nspam_destiny = 'discard'\n"
              'notify_admin = { spam = "admin@example.test" }\n')
    run(sink, policy, [BAYES], ["bob@example.test"], sender="jürgen@пример.рф",
        mail_params=(("SMTPUTF8", None),))
    [notice] = [m for m in sink.received if m.recipients == ["admin@example.test"]]
    parsed = email.message_from_bytes(notice.data, policy=email.policy.default)
    assert parsed["Subject"] == "SPAM from <jürgen@пример.рф>"
    assert ("SMTPUTF8", None) in notice.mail_params


@pytest.mark.parametrize(("policy", "kept"), [
    ("", False),                                            # blocked mail only
    ("quarantine_passed = ['spam']\n", True),              # as Debian's amavis
    ("quarantine_passed = ['spam']\nspam_quarantine_cutoff_level = 5\n", False),
    ("quarantine_passed = ['virus']\n", False),            # another category
])
def test_passed_spam_is_kept_when_quarantine_passed_lists_it(sink, caplog, policy, kept):
    """amavis quarantines by category whatever the destiny: Debian's D_PASS spam with
    its default $spam_quarantine_to is delivered and kept. The delivered copy names the
    held one (X-Quarantine-ID)."""
    levels = "kill_level = 2.0\ntag2_level = 2.0\n"
    replies, q = run(sink, levels + policy, [BAYES], ["bob@example.test"])
    assert [r[:3] for r in replies] == ["250"]
    delivered = copies(sink)["bob@example.test"]
    assert len(q.stored) == (1 if kept else 0)
    assert (b"X-Quarantine-ID: <abcdefghijkl>" in delivered) is kept
    line = summary(caplog)
    assert line.startswith("(00001-01) Passed SPAM") and ("Quarantined" in line) is kept, line
    if kept:
        assert q.stored[0]["category"] == "SPAM"
        assert q.stored[0]["recipients"] == ["bob@example.test"]
        assert q.stored[0]["held_for"] == []  # delivered: a kept copy, held for nobody


def test_the_quarantine_records_whom_a_kept_copy_was_held_for(sink):
    """A message kept for a spam lover (delivered, quarantine_passed) and a recipient
    whose spam is discarded: one row for both, held for the second only (amavis's
    X-Envelope-To-Blocked), so a release or a digest does not give the lover a
    second copy."""
    policy = ("kill_level = 2.0\ntag2_level = 2.0\nquarantine_passed = ['spam']\n"
              "spam_destiny = 'discard'\n"
              '[policy.recipients."lover@example.test"]\nspam_lover = true\n')
    replies, q = run(sink, policy, [BAYES], ["lover@example.test", "bob@example.test"])
    assert [r[:3] for r in replies] == ["250", "250"]
    assert list(copies(sink)) == ["lover@example.test"]
    assert q.stored[0]["recipients"] == ["lover@example.test", "bob@example.test"]
    assert q.stored[0]["held_for"] == ["bob@example.test"]


def _archive_files(directory) -> list:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def test_every_message_is_written_to_the_archive_directory(sink, caplog, tmp_path):
    """amavis's $archive_quarantine_method = 'local:archive/%m': one file per message,
    whatever its verdict, written as the quarantine writes (gzip, envelope in front)."""
    policy = f'archive_directory = "{tmp_path}/archive"\n'
    replies, q = run(sink, policy, [], ["bob@example.test"], sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250"] and "bob@example.test" in copies(sink)
    [path] = _archive_files(tmp_path / "archive")
    assert path == tmp_path / "archive" / "a" / "archive-abcdefghijkl.gz"
    env, raw = envelope.split(files.read_gz(path))
    assert raw == RAW
    assert (env.sender, env.recipients, env.mail_id) == (
        "alice@example.org", ["bob@example.test"], "abcdefghijkl")
    assert "{Archived" not in summary(caplog) and "RelayedInbound,Archived}" in summary(caplog)
    path.unlink()
    caplog.clear()
    replies, q = run(sink, policy, [WORM], ["bob@example.test"], sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250"] and len(q.stored) == 1  # discarded, held
    assert len(_archive_files(tmp_path / "archive")) == 1
    assert "{DiscardedInbound,Quarantined,Archived}" in summary(caplog)


def test_one_archive_file_per_directory_naming_its_recipients(sink, tmp_path):
    policy = (f'archive_directory = "{tmp_path}/main"\n'
              f'[policy.recipients."@other.test"]\narchive_directory = "{tmp_path}/other/"\n'
              '[policy.recipients."eve@example.test"]\narchive_directory = ""\n')
    run(sink, policy, [], ["bob@example.test", "carol@example.test", "dan@other.test",
                           "eve@example.test"])
    [main] = _archive_files(tmp_path / "main")
    [other] = _archive_files(tmp_path / "other")
    assert envelope.split(files.read_gz(main))[0].recipients == ["bob@example.test",
                                                                 "carol@example.test"]
    assert envelope.split(files.read_gz(other))[0].recipients == ["dan@other.test"]


@pytest.mark.parametrize("protocol", ["ESMTP", "LMTP"])
def test_an_archive_file_not_written_defers_before_anything_is_delivered(sink, caplog,
                                                                         tmp_path, protocol):
    """As a mailbox copy not taken: the message (over LMTP: its recipients that archive
    there) is deferred with 451, nothing else happens to it."""
    (tmp_path / "file").write_bytes(b"not a directory")
    policy = (f'archive_directory = "{tmp_path}/file/archive"\n'
              '[policy.recipients."carol@example.test"]\narchive_directory = ""\n')
    replies, q = run(sink, policy, [WORM], ["bob@example.test", "carol@example.test"],
                     protocol=protocol)
    if protocol == "ESMTP":
        assert [r[:3] for r in replies] == ["451", "451"], replies
        assert sink.received == [] and q.stored == []
    else:
        assert [r[:3] for r in replies] == ["451", "250"], replies
        assert q.stored[0]["recipients"] == ["carol@example.test"]
    assert f"archiving in {tmp_path}/file/archive failed" in caplog.text
    assert "TempFailed" in summary(caplog) and "Archived" not in summary(caplog)


def test_a_deferred_message_leaves_no_archive_file_per_attempt(sink, caplog, tmp_path):
    """Archived, then the next hop defers the delivery: Postfix retries, which archives
    it again under a new mail_id, so this attempt's file is removed (one per message)."""
    policy = f'archive_directory = "{tmp_path}/archive"\n'
    sink.behaviour.rcpt_reply = lambda r: "451 4.3.0 try later"
    replies, _ = run(sink, policy, [], ["bob@example.test"])
    assert [r[:3] for r in replies] == ["451"]
    assert _archive_files(tmp_path / "archive") == []
    assert "archive copy" in caplog.text and "removed (the retry writes it again)" \
        in caplog.text
    assert "Archived" not in summary(caplog)


def test_an_error_after_archiving_leaves_no_archive_file(sink, caplog, tmp_path):
    """Delivery raises (an internal failure): the filter answers 451 and Postfix
    retries, which archives the message again; this attempt's file goes."""
    async def broken(*_args: object) -> None:
        raise RuntimeError("delivery broke")

    replies, _ = run(sink, f'archive_directory = "{tmp_path}/archive"\n', [],
                     ["bob@example.test"], deliver=broken)
    assert [r[:3] for r in replies] == ["451"]
    assert _archive_files(tmp_path / "archive") == []
    assert "removed (the retry writes it again)" in caplog.text


def test_over_lmtp_an_archive_file_stays_for_recipients_that_were_delivered(sink,
                                                                             tmp_path):
    policy = f'archive_directory = "{tmp_path}/archive"\n'
    sink.behaviour.rcpt_reply = (lambda r: "451 4.3.0 try later" if r.startswith("carol")
                                 else "250 2.1.5 Ok")
    replies, _ = run(sink, policy, [], ["bob@example.test", "carol@example.test"],
                     protocol="LMTP")
    assert [r[:3] for r in replies] == ["250", "451"]
    assert len(_archive_files(tmp_path / "archive")) == 1


@pytest.mark.parametrize(("hits", "extra", "category"), [
    ([], "", "CLEAN"),
    ([BAYES], "tag2_level = 5.0\n", "SPAMMY"),             # below kill_level: no spam
    ([BAYES], "tag2_level = 5.0\nspam_quarantine_cutoff_level = 5.5\n", None),
    ([BAYES], "tag2_level = 2.0\nkill_level = 2.0\n", None),  # spam: its own key
    ([BADH], "", None),                                    # bad_header: its own key
])
def test_quarantine_passed_clean_keeps_mail_amavis_clean_quarantines(sink, caplog, hits,
                                                                     extra, category):
    """amavis's $clean_quarantine_method: passed mail of no category with a quarantine
    of its own (CLEAN, and SPAMMY, which falls back to CC_CLEAN) is kept and released
    like any held mail; spam cutoffs apply to SPAMMY as amavis applies them."""
    replies, q = run(sink, "quarantine_passed = ['clean']\n" + extra, hits,
                     ["bob@example.test"])
    assert [r[:3] for r in replies] == ["250"] and "bob@example.test" in copies(sink)
    assert [s["category"] for s in q.stored] == ([category] if category else [])
    assert ("Quarantined" in summary(caplog)) is bool(category)

"""What goes into each column of amavis's SQL log for a message (no database here)."""

from __future__ import annotations

import pytest

from scanner.actions.run import Outcome
from scanner.config import loads
from scanner.scores import load_scores
from scanner.sqllog.build import message_row
from scanner.sqllog.config import SqlLogConfig
from scanner.sqllog.rows import (
    Address,
    address,
    content_letter,
    delivery_status,
    dsn_sent,
    partition_tag,
    text,
)
from scanner.task import ClientInfo, Destiny, Envelope, Hit, Recipient, Task, Verdict

CONFIG = loads('[policy]\nlocal_domains = ["example.test"]\n')


@pytest.mark.parametrize(("given", "email", "domain"), [
    ("Alice@Mail.Example.ORG", "alice@mail.example.org", "org.example.mail"),
    ("", "", ""),
    ("<>", "", ""),
    ("postmaster", "postmaster", ""),
    ("jörg@bücher.example", "jörg@xn--bcher-kva.example", "example.xn--bcher-kva"),
    ("bob@example.test.", "bob@example.test", "test.example"),
])
def test_addresses_as_amavis_keeps_them_in_maddr(given: str, email: str, domain: str):
    assert address(given) == Address(email, domain)


def test_text_is_cut_to_the_column_and_loses_nul():
    assert text("a\x00b" + "c" * 300) == "ab" + "c" * 253


@pytest.mark.parametrize(("status", "ds"), [
    ("RelayedInbound", "P"), ("RelayedTaggedOutbound", "P"), ("Accepted", "P"),
    ("RejectedInbound", "R"), ("BouncedInbound", "B"), ("NoBounceInbound", "D"),
    ("DiscardedInternal", "D"), ("TempFailedInbound", "T"), ("", "T")])
def test_delivery_status_letters(status: str, ds: str):
    assert delivery_status(status) == ds


def test_dsn_sent_and_content_letters():
    assert dsn_sent(["RelayedInbound", "BouncedInbound"]) == "Y"
    assert dsn_sent(["NoBounceInbound"]) == "q"
    assert dsn_sent(["DiscardedInbound"]) == "N"
    assert [content_letter(c) for c in ("VIRUS", "BANNED", "UNCHECKED", "SPAM", "SPAMMY",
                                        "BAD-HEADER", "OVERSIZED", "MTA-BLOCKED",
                                        "CLEAN")] == list("VBUSYHOTC")


def test_week_partition_is_the_iso_week_of_arrival():
    assert partition_tag(7, False, 1765000000) == 7
    assert partition_tag(0, True, 1765000000) == 49  # 2025-12-06
    assert partition_tag(0, True, 1767225600) == 1  # 2026-01-01, week 1 of 2026


def _task() -> Task:
    raw = (b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>\r\nSubject: =?utf-8?q?"
           b"Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <x\xc3\xa9@example.org>\r\n\r\nhi\r\n")
    task = Task(mail_id="Ab3-_xYz0123", raw=raw, log_id="4242-07", arrived=1765000000.9,
                envelope=Envelope("joerg@example.org", (
                    Recipient("bob@example.test"), Recipient("eve@example.net"))),
                client=ClientInfo(addr="192.0.2.7"), policy_banks=("ORIGINATING",))
    from scanner.pipeline.parse import parse_headers
    task.message = parse_headers(raw)
    task.hits = [Hit("SC_GTUBE"), Hit("PENPALS_REPLY", recipient="bob@example.test")]
    policy = CONFIG.policy
    task.verdicts = {
        "bob@example.test": Verdict("SPAM", Destiny.DISCARD, 999.0, policy=policy,
                                    hits=[Hit("SC_GTUBE"), Hit("SENDER_BLOCKLISTED")]),
        "eve@example.net": Verdict("CLEAN", Destiny.PASS, 0.0, policy=policy,
                                   spam_scanned=False, hits=[Hit("SENDER_ALLOWLISTED")])}
    return task


def _outcome() -> Outcome:
    out = Outcome(["250 2.7.0 Ok, discarded, id=4242-07 - SPAM",
                   "250 2.0.0 from MTA: 250 Ok"],
                  by_recipient={0: "DiscardedOutbound", 1: "RelayedOutbound"},
                  quarantined=True, quarantine="A/spam-Ab3-_xYz0123.gz")
    out.secret_id = "s3cret-S3cre"
    return out


def test_a_message_row_from_its_task_and_outcome():
    scores = load_scores()
    row = message_row(_task(), _outcome(), "SPAM", SqlLogConfig(database="postgresql://x"),
                      "mx.example.test", scores, "/q", CONFIG.policy)
    assert row is not None
    assert (row.mail_id, row.secret_id, row.am_id, row.time_num) == (
        "Ab3-_xYz0123", "s3cret-S3cre", "4242-07", 1765000000)
    assert (row.content, row.quar_type, row.quar_loc, row.dsn_sent) == (
        "S", "F", "A/spam-Ab3-_xYz0123.gz", "N")
    assert row.quarantine_file is None  # quarantine_text off
    assert row.originating and row.policy == "ORIGINATING" and row.client_addr == "192.0.2.7"
    assert row.subject == "Grüße" and row.from_addr == "Jörg <joerg@example.org>"
    assert row.message_id == "<x?@example.org>"  # 7-bit, as the column is
    # the message's level leaves out bob's own pen pals points
    assert row.spam_level == scores.get("SC_GTUBE").weight
    bob, eve = row.recipients
    assert (bob.content, bob.ds, bob.is_local, bob.blocklisted, bob.bspam_level) == (
        "S", "D", True, True, 999.0)
    assert (eve.content, eve.ds, eve.is_local, eve.allowlisted, eve.bspam_level) == (
        "C", "P", False, True, None)
    assert eve.smtp_resp == "250 2.0.0 from MTA: 250 Ok"


def test_quarantine_text_and_only_held_mail():
    cfg = SqlLogConfig(database="postgresql://x", quarantine_text=True, all_messages=False)
    row = message_row(_task(), _outcome(), "SPAM", cfg, "mx", load_scores(), "/q",
                      CONFIG.policy)
    assert row is not None and (row.quar_type, row.quar_loc) == ("Q", "Ab3-_xYz0123")
    assert row.quarantine_file == "/q/A/spam-Ab3-_xYz0123.gz"
    passed = Outcome(["250 ok", "250 ok"], by_recipient={0: "Relayed", 1: "Relayed"})
    assert message_row(_task(), passed, "CLEAN", cfg, "mx", load_scores(), "/q",
                       CONFIG.policy) is None


def test_a_next_hops_refusal_is_mta_blocked():
    task = _task()
    out = Outcome(["250 ok", "554 5.7.1 no"], by_recipient={0: "DiscardedOutbound",
                                                           1: "RejectedOutbound"},
                  refused=[1])
    row = message_row(task, out, "SPAM", SqlLogConfig(database="postgresql://x"), "mx",
                      load_scores(), "/q", CONFIG.policy)
    assert row is not None
    assert [(r.content, r.ds) for r in row.recipients] == [("S", "D"), ("T", "R")]
    assert (row.quar_type, row.secret_id) == (" ", "")

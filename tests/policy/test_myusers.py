"""amavis's MYUSERS policy bank through the real Processor: with ``[policy_banks.MYUSERS]``
defined, mail of our own users (the ORIGINATING or MYNETS bank) whose envelope sender
is local gets that bank after the others; the log line names it. Here the bank turns
the spam headers on (the built-in ORIGINATING bank has them off), so a copy shows
whether it applied."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from scanner.config import loads
from scanner.task import ClientInfo, Envelope, Recipient, Task
from scanner.testing.sink import Sink
from tests.helpers import handle_at_sink

MESSAGE = (b"From: someone@example.test\r\nTo: bob@example.test\r\nSubject: notes\r\n"
           b"Message-ID: <m1@example.test>\r\n\r\nthe notes\r\n")
CONFIG = ("[checks]\nenabled = []\n[quarantine]\nampdp_socket = \"\"\n"
          "[policy]\nlocal_domains = ['example.test']\n"
          "[policy_banks.MYUSERS]\nbypass_spam_checks = false\nspam_headers = true\n"
          "tag_level = -999.0\n")


def _deliver(sink: Sink, config_text: str, sender: str, bank: str = "ORIGINATING",
             client: str = "192.0.2.9") -> bool:
    """Whether the copy for bob@example.test carries the spam headers (MYUSERS applied)."""
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=MESSAGE,
                envelope=Envelope(sender, (Recipient("bob@example.test"),)),
                client=ClientInfo(addr=client, helo="pc.example.test"), policy_bank=bank)
    before = len(sink.received)
    replies = handle_at_sink(loads(config_text, "t.toml"), [], task, sink.port, 10026, bank)
    assert all(r.startswith("250") for r in replies), replies
    head = sink.wait_for(before + 1)[before].data.split(b"\r\n\r\n")[0]
    return b"X-Spam-Flag: NO" in head


@pytest.mark.parametrize(("sender", "bank", "client", "applies"), [
    ("alice@example.test", "ORIGINATING", "192.0.2.9", True),
    ("x@other.test", "ORIGINATING", "192.0.2.9", False),     # sender not local
    ("", "ORIGINATING", "192.0.2.9", False),                 # null sender
    ("alice@example.test", "", "192.0.2.9", False),          # inbound: not our user's
    ("alice@example.test", "", "127.0.0.5", True),           # MYNETS (defined below)
])
def test_myusers_needs_originating_mail_from_a_local_sender(sink, caplog, sender, bank,
                                                           client, applies):
    text = CONFIG + "[policy_banks.MYNETS]\nvirus_lover = true\n"
    with caplog.at_level(logging.INFO, "scanner"):
        assert _deliver(sink, text, sender, bank, client) is applies
    line = next(r.getMessage() for r in caplog.records if "Passed CLEAN" in r.getMessage())
    assert ("MYUSERS" in line) is applies, line
    if applies:
        assert ("ORIGINATING/MYUSERS" if bank else "MYNETS/MYUSERS") in line


def test_without_the_bank_nothing_changes(sink, caplog):
    text = CONFIG.replace("[policy_banks.MYUSERS]", "[policy_banks.OTHER]")
    with caplog.at_level(logging.INFO, "scanner"):
        assert not _deliver(sink, text, "alice@example.test")
    assert "MYUSERS" not in caplog.text


def test_a_policy_sql_row_makes_the_sender_local(sink, tmp_path: Path):
    db = tmp_path / "policy.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings TEXT)")
        conn.executemany("INSERT INTO scanner_policy VALUES (?, ?)", [
            ("@hosted.test", json.dumps({"local": True})),
            ("carol@example.test", json.dumps({"local": False}))])
    text = CONFIG.replace("[policy]\n", f'[policy]\nsql_lookup = "sqlite:{db}"\n', 1)
    assert _deliver(sink, text, "alice@hosted.test")
    assert not _deliver(sink, text, "carol@example.test")
    assert _deliver(sink, text, "alice@example.test")


def test_without_local_domains_only_an_explicit_local_makes_a_sender_ours(sink):
    """An empty local_domains makes every recipient local, but no sender: as in amavis,
    whose empty @local_domains_maps matches nobody."""
    text = CONFIG.replace("local_domains = ['example.test']\n", "") + \
        '[policy.recipients."@hosted.test"]\nlocal = true\n'
    assert not _deliver(sink, text, "alice@example.test")
    assert _deliver(sink, text, "alice@hosted.test")

"""Who is local, per recipient: ``local`` in a recipient table or a policy SQL row, and
LDAP's ``amavisLocal`` (amavis puts its SQL ``local`` field and LDAP ``amavisLocal``
lookups in front of ``@local_domains_maps``). Local recipients get the spam headers
and the Subject tag, and the log line's direction says Inbound rather than OpenRelay."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from scanner.config import loads
from scanner.policy.ldap import LdapPolicy
from scanner.task import ClientInfo, Envelope, Recipient, Task
from scanner.testing.sink import Sink
from tests.helpers import handle_at_sink
from tests.slapd import PEOPLE, SUFFIX, Slapd

SPAM = (b"From: promo@spam.example\r\nTo: someone@example.test\r\nSubject: deal\r\n"
        b"Message-ID: <l1@spam.example>\r\n\r\nbuy now\r\n")
BASE = ("[checks]\nenabled = []\n[policy]\nlocal_domains = ['example.test']\n"
        "block_senders = ['@spam.example']\nspam_destiny = 'pass'\n")


def _deliver(sink: Sink, config_text: str, rcpt: str) -> bytes:
    """The copy the next hop got for ``rcpt`` (a message blocklisted as spam, passed)."""
    config = loads(config_text, "t.toml")
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=SPAM,
                envelope=Envelope("promo@spam.example", (Recipient(rcpt),)),
                client=ClientInfo(addr="192.0.2.7", helo="mx.spam.example"))
    before = len(sink.received)
    replies = handle_at_sink(config, [], task, sink.port)
    assert all(r.startswith("250") for r in replies), replies
    return sink.wait_for(before + 1)[before].data


def _tagged(data: bytes) -> bool:
    head = data.split(b"\r\n\r\n")[0]
    return b"X-Spam-Flag: YES" in head and b"Subject: ***SPAM*** deal" in head


def test_local_domains_alone(sink: Sink) -> None:
    assert _tagged(_deliver(sink, BASE, "u@example.test"))
    assert not _tagged(_deliver(sink, BASE, "u@hosted.test"))


def test_a_recipient_table_sets_local_either_way(sink: Sink, caplog) -> None:
    text = (BASE + '[policy.recipients."@hosted.test"]\nlocal = true\n'
            '[policy.recipients."list@example.test"]\nlocal = false\n')
    with caplog.at_level(logging.INFO, "scanner"):
        assert _tagged(_deliver(sink, text, "u@hosted.test"))
    assert "Passed SPAM {RelayedTaggedInbound}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, "scanner"):
        assert not _tagged(_deliver(sink, text, "list@example.test"))
    assert "{RelayedOpenRelay}" in caplog.text
    assert _tagged(_deliver(sink, text, "other@example.test"))


def test_a_policy_sql_row_sets_local(sink: Sink, tmp_path: Path) -> None:
    db = tmp_path / "policy.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings TEXT)")
        conn.executemany("INSERT INTO scanner_policy VALUES (?, ?)", [
            ("@hosted.test", json.dumps({"local": True})),
            ("@.", json.dumps({"tag_level": -999})),  # sets no local: local_domains decides
            ("nolocal@hosted.test", json.dumps({"local": False}))])
    text = BASE.replace("[policy]\n", f'[policy]\nsql_lookup = "sqlite:{db}"\n')
    assert _tagged(_deliver(sink, text, "u@hosted.test"))
    assert not _tagged(_deliver(sink, text, "nolocal@hosted.test"))
    assert not _tagged(_deliver(sink, text, "u@remote.test"))
    assert _tagged(_deliver(sink, text, "u@example.test"))


def _ldap_local(slapd: Slapd, address: str) -> bool | None:
    config = loads(f'[policy]\nldap_lookup = "{slapd.url}"\nldap_base = "{SUFFIX}"\n'
                   '[quarantine]\ndirectory = "/var/lib/scanner/quarantine"\n', "t.toml")
    override = LdapPolicy(config).override_for(address)
    return None if override is None else override.local


def test_amavis_local_as_amavis_reads_it(slapd: Slapd) -> None:
    """An entry without amavisLocal makes its recipient local (amavis's B1 attribute),
    except the @. catch-all; the first entry by key decides."""
    slapd.account("dom", "@hosted.test", amavisSpamLover="TRUE")
    slapd.account("any", "@.", amavisSpamTag2Level="9")
    slapd.account("off", "off@hosted.test", amavisLocal="FALSE")
    slapd.account("on", "@example.test", amavisLocal="TRUE")
    slapd.account("plain", "plain@example.test", amavisBypassSpamChecks="TRUE")
    assert _ldap_local(slapd, "u@hosted.test") is True
    assert _ldap_local(slapd, "off@hosted.test") is False
    assert _ldap_local(slapd, "u@remote.test") is None  # only the catch-all
    assert _ldap_local(slapd, "plain@example.test") is True


def test_an_ldap_entry_makes_its_recipient_local(slapd: Slapd, sink: Sink) -> None:
    slapd.account("dom", "@hosted.test", amavisSpamLover="FALSE")
    slapd.account("off", "off@example.test", amavisLocal="FALSE")
    text = BASE.replace("[policy]\n", f'[policy]\nldap_lookup = "{slapd.url}"\n'
                        f'ldap_base = "{PEOPLE}"\n')
    assert _tagged(_deliver(sink, text, "u@hosted.test"))
    assert not _tagged(_deliver(sink, text, "off@example.test"))
    assert not _tagged(_deliver(sink, text, "u@remote.test"))


@pytest.mark.parametrize("value", ["true", "false"])
def test_local_is_a_boolean_in_every_table(value: str) -> None:
    config = loads(f'[policy_banks.X]\nlocal = {value}\n', "t.toml")
    assert config.policy_banks["X"].local is (value == "true")
    with pytest.raises(Exception, match="local"):
        loads('[policy.recipients."@a.test"]\nlocal = "yes"\n', "t.toml")

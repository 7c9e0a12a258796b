"""Disclaimers through the real Processor (amavis's allow_disclaimers,
outbound_disclaimers_only, disclaimer options by sender): mail from a local sender
leaving through the ORIGINATING listener gets one, local recipients do not (outbound
only), inbound mail never; the configuration is checked at load."""

from __future__ import annotations

import email
import json
import logging
import sqlite3
from email.policy import compat32
from pathlib import Path

import pytest

from scanner.config import loads
from scanner.errors import ConfigError
from scanner.task import ClientInfo, Envelope, Recipient, Task
from scanner.testing.sink import Sink
from tests.helpers import handle_at_sink
from tests.policy.recipient_mix import EICAR, FakeCheck
from tests.slapd import PEOPLE
from tests.test_pdp_scan import start  # noqa: F401  (fixture)

TEXT = "Sent from Example Ltd: confidential.\n"
SALES = "Example Sales: prices without obligation.\n"
HTML = "<p>Sent from <b>Example Ltd</b>: confidential.</p>"


def message(author: str) -> bytes:
    return (f"From: {author}\r\nTo: ext@remote.test, bob@example.test\r\nSubject: offer\r\n"
            "Message-ID: <o1@example.test>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/alternative; boundary="x"\r\n\r\n--x\r\n'
            "Content-Type: text/plain; charset=utf-8\r\n\r\nour offer\r\n--x\r\n"
            "Content-Type: text/html; charset=utf-8\r\n\r\n"
            "<html><body>our offer</body></html>\r\n--x--\r\n").encode()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "d.txt").write_text(TEXT)
    (tmp_path / "dsales.txt").write_text(SALES)
    (tmp_path / "d.html").write_text(HTML)
    (tmp_path / "dsales.html").write_text("<p>Sales</p>")
    return tmp_path


def config(files: Path, bank: str = "allow_disclaimers = true\n"
           "outbound_disclaimers_only = true\n", policy: str = "") -> str:
    return ('[checks]\nenabled = []\n[quarantine]\nampdp_socket = ""\n'
            "[policy]\nlocal_domains = ['example.test', '.example.test']\n"
            f'disclaimer_text = "{files}/d_OPTION_.txt"\n'
            f'disclaimer_html = "{files}/d_OPTION_.html"\n'
            '[policy.disclaimer_options]\n"@sales.example.test" = "sales"\n'
            f"{policy}[policy_banks.ORIGINATING]\n{bank}")


def deliver(sink: Sink, conf: str, bank: str, sender: str, author: str,
            rcpts: tuple[str, ...] = ("ext@remote.test", "bob@example.test"), copies: int = 2,
            checks: list | None = None) -> dict[str, email.message.Message]:
    """Each recipient's copy, once the next hop has the ``copies`` messages."""
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=message(author),
                envelope=Envelope(sender, tuple(Recipient(r) for r in rcpts)),
                client=ClientInfo(addr="192.0.2.9", helo="pc.example.test"), policy_bank=bank)
    replies = handle_at_sink(loads(conf, "t.toml"), checks or [], task, sink.port, 10026,
                             bank)
    assert all(r.startswith("250") for r in replies), replies
    got = sink.wait_for(copies)
    return {r: email.message_from_bytes(m.data, policy=compat32)
            for m in got for r in m.recipients}


def bodies(msg: email.message.Message) -> list[str]:
    return [p.get_payload(decode=True).decode() for p in msg.walk() if not p.is_multipart()]


def test_outgoing_mail_gets_it_for_the_outside_recipient_only(files, sink, caplog):
    caplog.set_level(logging.INFO, logger="scanner")
    got = deliver(sink, config(files), "ORIGINATING", "alice@example.test",
                  "Alice <alice@example.test>")
    assert bodies(got["ext@remote.test"]) == [f"our offer\r\n\r\n{TEXT.rstrip()}",
                                              f"<html><body>our offer{HTML}\r\n</body></html>"]
    assert bodies(got["bob@example.test"]) == ["our offer", "<html><body>our offer</body></html>"]
    assert f"disclaimer added ({files}/d.txt, {files}/d.html)" in caplog.text


def test_without_outbound_only_local_recipients_get_it_too(files, sink):
    got = deliver(sink, config(files, "allow_disclaimers = true\n"), "ORIGINATING",
                  "alice@example.test", "alice@example.test")
    assert all(TEXT.rstrip() in bodies(m)[0] for m in got.values()) and len(got) == 2


def test_inbound_mail_never_gets_one_even_with_a_local_from(files, sink):
    got = deliver(sink, config(files), "", "alice@example.test", "alice@example.test",
                  copies=1)
    for copy in got.values():
        assert bodies(copy) == ["our offer", "<html><body>our offer</body></html>"]


def test_a_foreign_sender_through_the_submission_bank_gets_none(files, sink):
    got = deliver(sink, config(files), "ORIGINATING", "x@other.test", "X <x@other.test>",
                  rcpts=("ext@remote.test",), copies=1)
    assert bodies(got["ext@remote.test"])[0] == "our offer"


@pytest.mark.parametrize(("table", "sender", "expected"), [
    ("", "alice@hosted.test", False),  # local_domains alone: not ours
    ('[policy.recipients."@hosted.test"]\nlocal = true\n', "alice@hosted.test", True),
    ('[policy.recipients."alice@example.test"]\nlocal = false\n', "alice@example.test",
     False),
])
def test_a_recipient_tables_local_decides_whether_the_sender_is_ours(files, sink, table,
                                                                      sender, expected):
    got = deliver(sink, config(files, policy=table), "ORIGINATING", sender,
                  f"Alice <{sender}>", rcpts=("ext@remote.test",), copies=1)
    first = bodies(got["ext@remote.test"])[0]
    assert first == (f"our offer\r\n\r\n{TEXT.rstrip()}" if expected else "our offer")


@pytest.mark.parametrize(("sender", "expected"), [
    ("alice@hosted.test", True),        # {"local": true} for @hosted.test
    ("nolocal@example.test", False),    # {"local": false} beats local_domains
    ("bob@example.test", True),         # a row without "local": local_domains decides
    ("x@other.test", False),            # no row, not in local_domains
])
def test_a_policy_sql_rows_local_decides_whether_the_sender_is_ours(files, sink, tmp_path,
                                                                     sender, expected):
    db = tmp_path / "policy.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings TEXT)")
        conn.executemany("INSERT INTO scanner_policy VALUES (?, ?)", [
            ("@hosted.test", json.dumps({"local": True})),
            ("nolocal@example.test", json.dumps({"local": False})),
            ("@example.test", json.dumps({"tag_level": 1.0}))])
    conf = config(files).replace("[policy]\n", f'[policy]\nsql_lookup = "sqlite:{db}"\n', 1)
    got = deliver(sink, conf, "ORIGINATING", sender, f"Sender <{sender}>",
                  rcpts=("ext@remote.test",), copies=1)
    first = bodies(got["ext@remote.test"])[0]
    assert first == (f"our offer\r\n\r\n{TEXT.rstrip()}" if expected else "our offer")


def test_an_ldap_entry_makes_the_sender_ours(files, sink, slapd):
    """amavisLocal as for a recipient: an entry without it makes its address local, one
    with FALSE not, whatever local_domains says."""
    slapd.account("dom", "@hosted.test", amavisSpamLover="FALSE")
    slapd.account("off", "off@example.test", amavisLocal="FALSE")
    conf = config(files).replace(
        "[policy]\n", f'[policy]\nldap_lookup = "{slapd.url}"\nldap_base = "{PEOPLE}"\n', 1)
    for sender, expected in (("alice@hosted.test", True), ("off@example.test", False)):
        before = len(sink.received)
        deliver(sink, conf, "ORIGINATING", sender, f"S <{sender}>",
                rcpts=("ext@remote.test",), copies=before + 1)
        copy = email.message_from_bytes(sink.received[before].data, policy=compat32)
        assert bodies(copy)[0] == (f"our offer\r\n\r\n{TEXT.rstrip()}" if expected
                                   else "our offer"), sender


def test_the_local_author_chooses_the_option_before_the_envelope_sender(files, sink):
    got = deliver(sink, config(files), "ORIGINATING", "bounces@example.test",
                  "Sam <sam@sales.example.test>", rcpts=("ext@remote.test",),
                  copies=1)
    assert bodies(got["ext@remote.test"]) == [
        f"our offer\r\n\r\n{SALES.rstrip()}", "<html><body>our offer<p>Sales</p>\r\n</body></html>"]


def test_a_defanged_copy_gets_no_disclaimer_the_outside_one_does(files, sink):
    """One body edit per copy, as amavis: the local virus lover's copy is wrapped (the
    original attached unchanged), the outside recipient's gets the disclaimer."""
    conf = config(files, "allow_disclaimers = true\nvirus_lover = true\ndefang = ['virus']\n")
    got = deliver(sink, conf, "ORIGINATING", "alice@example.test", "alice@example.test",
                  checks=[FakeCheck("clamav", "virus", [EICAR])])
    wrapped = got["bob@example.test"]
    assert wrapped.get_content_type() == "multipart/mixed"
    assert TEXT.rstrip() not in wrapped.as_string()
    assert bodies(got["ext@remote.test"])[0] == f"our offer\r\n\r\n{TEXT.rstrip()}"


def test_a_missing_file_is_a_config_error_naming_key_and_file(files):
    (files / "dsales.html").unlink()
    with pytest.raises(ConfigError, match=r"'policy.disclaimer_html': cannot use "
                                          rf"'{files}/dsales.html': No such file"):
        loads(config(files), "t.toml")


def test_allow_disclaimers_needs_local_domains_and_options_are_file_words(files):
    with pytest.raises(ConfigError, match="allow_disclaimers' needs 'policy.local_domains'"):
        loads(f'[policy]\ndisclaimer_text = "{files}/d.txt"\nallow_disclaimers = true\n')
    with pytest.raises(ConfigError, match="is not a file-name word"):
        loads(config(files).replace('= "sales"', '= "../etc/passwd"'), "t.toml")


def test_the_milter_path_passes_without_it_and_says_so(start, files, caplog):  # noqa: F811
    scanner = start(policy=f'disclaimer_text = "{files}/d.txt"\nallow_disclaimers = true\n')
    answer = scanner.scan(rcpts=("ext@remote.test",), sender="<alice@example.test>")
    assert answer["return_value"] == ["continue"]
    assert "a disclaimer cannot go into a message the MTA keeps" in caplog.text

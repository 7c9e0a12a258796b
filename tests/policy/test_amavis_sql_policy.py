"""Per-recipient policy from amavis's users and policy tables (``policy.sql_lookup_tables
= "amavis"``), as Modoboa and iRedAdmin edit them: read from SQLite, PostgreSQL (bytea
addresses, amavis 2.6+) and MariaDB (varbinary), merged field by field in amavis's
order, and applied to a message by ``scanner serve``."""

from __future__ import annotations

import contextlib
import logging
import smtplib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from scanner.config import loads
from scanner.errors import ConfigError
from scanner.policy.amavis_sql import AmavisSqlLookupError, AmavisSqlPolicy
from scanner.policy.sources import make_sources
from scanner.testing.filter import FilterProcess
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from tests.helpers import filter_config
from tests.sqllog.util import connect

POLICY_COLUMNS = """id {serial}, policy_name varchar(32),
  virus_lover char(1), spam_lover char(1), banned_files_lover char(1),
  bypass_spam_checks char(1), spam_tag2_level {real}, spam_kill_level {real},
  spam_subject_tag2 varchar(64), message_size_limit integer,
  virus_quarantine_to varchar(64)"""
POLICIES = [
    (1, "Default", None, None, None, "N", None, 6.31, None, None, None),
    (2, "lover", None, "Y", None, None, 5.0, None, None, None, "virus-quarantine"),
    (3, "domain", None, None, "Y", None, None, 10.0, "***SPAM*** ", 1000, None),
]
USERS = [  # (id, priority, policy_id, email, local)
    (1, 0, 1, "@.", None),
    (2, 5, 3, "@example.test", None),
    (3, 7, 2, "bob@example.test", None),
    (4, 7, 2, "eve@example.test", "N"),
    (5, 6, 2, "alice", None),  # a bare user name: local recipients only
]
WBLIST = [  # (users id, sender pattern, wb)
    (3, "@friend.example", "W"), (3, "spammer@bad.example", "B"),
    (3, "@soft.example", "-3.5"), (2, "boss@evil.example", "N")]
KINDS = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY", "real": "real", "email": "text"},
    "postgresql": {"serial": "serial PRIMARY KEY", "real": "real", "email": "bytea"},
    "mysql": {"serial": "int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY",
              "real": "float", "email": "varbinary(255)"},
}


def _make(kind: str, url: str) -> None:
    t = KINDS[kind]
    statements = [
        "DROP TABLE IF EXISTS users", "DROP TABLE IF EXISTS policy",
        "DROP TABLE IF EXISTS wblist", "DROP TABLE IF EXISTS mailaddr",
        f"CREATE TABLE mailaddr (id {t['serial']}, priority integer NOT NULL DEFAULT 7, "
        f"email {t['email']} NOT NULL UNIQUE)",
        "CREATE TABLE wblist (rid integer NOT NULL, sid integer NOT NULL, "
        "wb varchar(10) NOT NULL, PRIMARY KEY (rid, sid))",
        f"CREATE TABLE policy ({POLICY_COLUMNS.format(**t)})",
        f"CREATE TABLE users (id {t['serial']}, priority integer NOT NULL DEFAULT 7, "
        f"policy_id integer NOT NULL DEFAULT 1, email {t['email']} NOT NULL UNIQUE, "
        "fullname varchar(255), local char(1))"]
    mark = "?" if kind == "sqlite" else "%s"
    binary = kind != "sqlite"
    with contextlib.closing(sqlite3.connect(url[len("sqlite:"):]) if kind == "sqlite"
                            else connect(url)) as con:
        cur = con.cursor()
        for statement in statements:
            cur.execute(statement)
        for row in POLICIES:
            cur.execute(f"INSERT INTO policy VALUES ({', '.join([mark] * len(row))})", row)
        for uid, prio, pid, email, local in USERS:
            cur.execute(f"INSERT INTO users (id, priority, policy_id, email, local) VALUES "
                        f"({', '.join([mark] * 5)})",
                        (uid, prio, pid, email.encode() if binary else email, local))
        for n, (rid, sender, wb) in enumerate(WBLIST, 1):
            cur.execute(f"INSERT INTO mailaddr (id, email) VALUES ({mark}, {mark})",
                        (n, sender.encode() if binary else sender))
            cur.execute(f"INSERT INTO wblist VALUES ({mark}, {mark}, {mark})", (rid, n, wb))
        con.commit()


@pytest.fixture(params=list(KINDS))
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = request.param
    if kind == "sqlite":
        found = f"sqlite:{tmp_path / 'amavis.sqlite'}"
    elif kind == "postgresql":
        found = request.getfixturevalue("pg_url")
    else:
        found = request.getfixturevalue("mariadb_url")
    _make(kind, found)
    return found


def _source(url: str) -> AmavisSqlPolicy:
    config = loads(f'[policy]\nsql_lookup = "{url}"\nsql_lookup_tables = "amavis"\n'
                   'local_domains = ["example.test"]\n')
    [source] = make_sources(config)
    assert isinstance(source, AmavisSqlPolicy)
    return source


def _set(override: Any) -> dict[str, Any]:
    return {k: v for k, v in ((f, getattr(override, f)) for f in override.__slots__)
            if v is not None} if override is not None else {}


def test_fields_merge_by_priority_then_specificity(url: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="scanner.policy")
    source = _source(url)
    got = source.overrides_for([("bob@example.test", True), ("carol@example.test", True),
                                ("eve@example.test", True), ("x@other.example", False)])
    source.close()
    assert _set(got["bob@example.test"]) == {
        "spam_lover": True, "tag2_level": 5.0, "kill_level": 10.0, "banned_lover": True,
        "subject_tag2": "***SPAM*** ", "oversized_size": 1000,
        "bypass_spam_checks": False, "local": True,
        "allow_senders": ("@friend.example",),
        "block_senders": ("spammer@bad.example", "boss@evil.example"),  # his, his domain's
        "sender_scores": {"@soft.example": -3.5}}
    assert _set(got["carol@example.test"]) == {  # the domain row's list only
        "kill_level": 10.0, "banned_lover": True, "subject_tag2": "***SPAM*** ",
        "oversized_size": 1000, "bypass_spam_checks": False, "local": True,
        "block_senders": ("boss@evil.example",)}
    assert _set(got["eve@example.test"])["local"] is False  # users.local N
    assert source.override_for("alice@example.test", local=True).spam_lover is True
    assert source.override_for("alice@other.example", local=False).spam_lover is None
    assert _set(got["x@other.example"]) == {  # the catch-all: no say on locality
        "kill_level": pytest.approx(6.31), "bypass_spam_checks": False}
    assert caplog.text.count("virus_quarantine_to has no equivalent") <= 1


def test_without_wblist_tables_there_are_no_sender_lists(tmp_path: Path) -> None:
    db = f"sqlite:{tmp_path / 'amavis.sqlite'}"
    _make("sqlite", db)
    with contextlib.closing(sqlite3.connect(db[len("sqlite:"):])) as con:
        con.execute("DROP TABLE wblist")
    source = _source(db)
    got = _set(source.override_for("bob@example.test"))
    assert got["spam_lover"] is True and "allow_senders" not in got


def test_an_unreadable_database_defers(tmp_path: Path) -> None:
    source = _source(f"sqlite:{tmp_path / 'missing.sqlite'}")
    with pytest.raises(AmavisSqlLookupError):
        source.overrides_for([("bob@example.test", True)])
    with pytest.raises(AmavisSqlLookupError, match="amavis's policy tables cannot be read "
                                                   r"\(sqlite:.*missing.sqlite\)"):
        source.probe()  # scanner serve at start, scanner config check


def test_mysql_urls_only_with_amavis_tables() -> None:
    loads('[policy]\nsql_lookup = "mysql://a:b@localhost/amavis"\n'
          'sql_lookup_tables = "amavis"\n')
    with pytest.raises(ConfigError, match="'policy.sql_lookup' = 'mysql://a:\\*\\*\\*@"):
        loads('[policy]\nsql_lookup = "mysql://a:b@localhost/amavis"\n')


def test_serve_applies_a_front_ends_spam_lover(tmp_path: Path, sink: Sink) -> None:
    """bob loves spam in the front end's tables: GTUBE reaches him, not carol."""
    db = f"sqlite:{tmp_path / 'amavis.sqlite'}"
    _make("sqlite", db)
    port = free_port()
    extra = (f'[policy]\nspam_destiny = "discard"\nlocal_domains = ["example.test"]\n'
             f'sql_lookup = "{db}"\nsql_lookup_tables = "amavis"\n')
    proc = FilterProcess(tmp_path, filter_config(port, sink.port, extra=extra,
                                                 log_file=tmp_path / "scanner.log"), [port])
    gtube = (b"From: a@example.org\r\nTo: bob@example.test\r\nSubject: t\r\n"
             b"Message-ID: <gtube1@example.org>\r\n\r\n"
             b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n")
    with proc, smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("a@example.org", ["bob@example.test", "carol@example.test"], gtube)
        # the domain's row blocks boss@evil.example: his plain mail is spam for both
        plain = gtube.replace(b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-"
                              b"EMAIL*C.34X", b"Lunch?").replace(b"gtube1", b"plain1")
        s.sendmail("boss@evil.example", ["bob@example.test", "carol@example.test"], plain)
    first, second = sink.wait_for(2)
    assert first.recipients == ["bob@example.test"]
    assert b"X-Spam-Flag: YES" in first.data and b"Subject: ***SPAM*** t" in first.data
    # bob loves spam: his copy comes, flagged; carol's is discarded
    assert second.recipients == ["bob@example.test"] and b"SENDER_BLOCKLISTED" in second.data


def test_the_policy_columns_read_are_amavis_s():
    """The column names derived from the LDAP attributes are those of amavis's policy
    table (README.sql-pg), each with the [policy] key it sets."""
    from scanner.policy.amavis_sql import COLUMNS

    assert {c: key for c, (key, _) in COLUMNS.items()} == {
        "spam_tag_level": "tag_level", "spam_tag2_level": "tag2_level",
        "spam_kill_level": "kill_level", "spam_dsn_cutoff_level": "dsn_cutoff_level",
        "spam_quarantine_cutoff_level": "spam_quarantine_cutoff_level",
        "message_size_limit": "oversized_size", "spam_subject_tag": "subject_tag",
        "spam_subject_tag2": "subject_tag2", "virus_lover": "virus_lover",
        "spam_lover": "spam_lover", "banned_files_lover": "banned_lover",
        "bad_header_lover": "bad_header_lover", "unchecked_lover": "unchecked_lover",
        "bypass_virus_checks": "bypass_virus_checks",
        "bypass_spam_checks": "bypass_spam_checks",
        "bypass_banned_checks": "bypass_banned_checks",
        "bypass_header_checks": "bypass_header_checks",
        "addr_extension_virus": "addr_extension_virus",
        "addr_extension_spam": "addr_extension_spam",
        "addr_extension_banned": "addr_extension_banned",
        "addr_extension_bad_header": "addr_extension_bad_header",
        "archive_quarantine_to": "archive_to"}

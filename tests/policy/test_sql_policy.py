"""Per-recipient policy rows from SQL (policy.sql_lookup): values checked as the
configuration file's, bad rows and keys logged and left out, a database that cannot be
read defers the message (as amavis), lookups off the worker's event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from scanner.config import loads
from scanner.policy import sql as sqlmod
from scanner.policy.sql import SqlPolicy
from scanner.task import Envelope, Recipient, Task
from scanner.testing.sink import Sink
from tests.helpers import handle_at_sink, message


def _db(path: Path, rows: list[tuple[Any, Any]]) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings)")
        conn.executemany("INSERT INTO scanner_policy VALUES (?, ?)", rows)
    conn.close()
    return path


def _config(db: Path, extra: str = "") -> Any:
    return loads(f'[policy]\nsql_lookup = "sqlite:{db}"\n{extra}'
                 '[quarantine]\ndirectory = "/var/lib/scanner/quarantine"\n', "t.toml")


def _policy(db: Path, extra: str = "") -> SqlPolicy:
    return SqlPolicy(f"sqlite:{db}", _config(db, extra))


def test_row_values_are_checked_as_the_configuration_files(tmp_path, caplog):
    """Each key a row carries passes the checks a [policy.recipients] table passes
    (types, levels, choices, addresses, archive paths, key names); a bad key is logged
    naming the row and the key and left out, the row's good keys still apply."""
    db = _db(tmp_path / "p.sqlite", [("u@example.test", """{
        "spam_lover": true,
        "archive_directory": "archive",
        "archive_to": "not an address",
        "quarantine_to": "nobody",
        "block_senders": ["example.org"],
        "notify_admin": {"viruz": "postmaster@example.test"},
        "tag2_level": "5.0",
        "spam_destiny": "explode",
        "quarantine": ["virus", "spamm"],
        "subject_tag2": "x\\r\\nBcc: victim@example.org",
        "no_such_key": 1
    }""")])
    row = _policy(db).override_for("u@example.test")
    assert row is not None and row.spam_lover is True
    assert (row.archive_directory, row.archive_to, row.quarantine_to, row.block_senders,
            row.notify_admin, row.tag2_level, row.spam_destiny, row.subject_tag2,
            row.quarantine) == (None,) * 9
    for key in ("archive_directory", "archive_to", "quarantine_to", "block_senders",
                "notify_admin", "tag2_level", "spam_destiny", "subject_tag2", "quarantine",
                "no_such_key"):
        assert f"policy SQL row 'u@example.test': key '{key}' ignored" in caplog.text, key
    assert "write an absolute path" in caplog.text


def test_an_archive_directory_inside_the_quarantine_is_refused(tmp_path, caplog):
    db = _db(tmp_path / "p.sqlite", [
        ("@example.test", '{"archive_directory": "/var/lib/scanner/quarantine/arch"}')])
    row = _policy(db).override_for("u@example.test")
    assert row is not None and row.archive_directory is None
    assert "overlaps 'quarantine.directory'" in caplog.text


def test_notify_recipient_needs_local_domains_in_a_row_too(tmp_path, caplog):
    db = _db(tmp_path / "p.sqlite", [("@example.test", '{"notify_recipient": ["virus"]}')])
    assert _policy(db).override_for("u@example.test").notify_recipient is None
    assert "needs 'policy.local_domains'" in caplog.text
    local = _policy(db, 'local_domains = ["example.test"]\n')
    assert local.override_for("u@example.test").notify_recipient == ("virus",)


@pytest.mark.parametrize("settings", [None, "", "not json", 5, "[1]", "null"])
def test_a_row_whose_settings_are_no_object_is_ignored(tmp_path, caplog, settings):
    """NULL, empty, not JSON, a number: the row is logged and ignored, the next less
    specific row applies (before, NULL or a number crashed the lookup: every message
    to the user deferred for ever)."""
    db = _db(tmp_path / "p.sqlite", [("u@example.test", settings),
                                     ("@example.test", '{"spam_lover": true}')])
    assert _policy(db).override_for("u@example.test").spam_lover is True
    assert "policy SQL row 'u@example.test' ignored" in caplog.text


def test_a_json_null_value_means_not_set(tmp_path):
    db = _db(tmp_path / "p.sqlite", [("u@example.test",
                                      '{"spam_lover": null, "virus_lover": true}')])
    row = _policy(db).override_for("u@example.test")
    assert row.spam_lover is None and row.virus_lover is True


def test_quotes_in_addresses_are_data_not_sql(tmp_path):
    db = _db(tmp_path / "p.sqlite", [("o'brien@example.test", '{"spam_lover": true}'),
                                     ("@example.test", '{"virus_lover": true}')])
    policy = _policy(db)
    assert policy.override_for("O'Brien@example.test").spam_lover is True
    assert policy.override_for("x') OR 1=1 --@other.test") is None


def test_patterns_equal_but_for_case_pick_one_and_log(tmp_path, caplog):
    db = _db(tmp_path / "p.sqlite", [("u@example.test", '{"spam_lover": true}'),
                                     ("U@Example.test", '{"virus_lover": true}')])
    row = _policy(db).override_for("u@example.test")
    assert row.virus_lover is True and row.spam_lover is None  # 'U...' sorts first
    assert "differ only in case" in caplog.text


@pytest.mark.parametrize("state", ["missing", "not a database", "no table"])
def test_a_database_that_cannot_be_read_raises(tmp_path, caplog, state):
    """amavis dies in lookup_sql and tempfails the message; so must we, rather than
    deliver with the configuration's policy alone (no archive copy, no discard)."""
    path = tmp_path / "p.sqlite"
    if state == "not a database":
        path.write_bytes(b"garbage" * 200)
    elif state == "no table":
        sqlite3.connect(path).close()
    with pytest.raises(sqlmod.SqlLookupError):
        _policy(path).override_for("u@example.test")
    assert "policy SQL lookup for <u@example.test> failed" in caplog.text


def _task(rcpt: str) -> Task:
    return Task(mail_id="abcdefghijkl", log_id="00001-01", raw=message("sql"),
                envelope=Envelope("a@example.org", (Recipient(rcpt),)))


def test_a_locked_database_defers_the_message(tmp_path, sink: Sink):
    """A database locked past policy.sql_timeout: 451 to Postfix, nothing delivered."""
    db = _db(tmp_path / "p.sqlite", [("@example.test", '{"spam_lover": true}')])
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        replies = handle_at_sink(_config(db, "sql_timeout = 1.0\n"), [],
                                 _task("b@example.test"), sink.port)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert replies == ["451 4.5.0 Error in processing, id=00001-01"]
    assert sink.received == []
    replies = handle_at_sink(_config(db), [], _task("b@example.test"), sink.port)
    assert replies[0].startswith("250"), replies


def test_a_removed_database_defers_the_message(tmp_path, sink: Sink):
    db = _db(tmp_path / "p.sqlite", [("@example.test", '{"spam_lover": true}')])
    config = _config(db)
    db.unlink()
    replies = handle_at_sink(config, [], _task("b@example.test"), sink.port)
    assert replies == ["451 4.5.0 Error in processing, id=00001-01"]
    assert sink.received == []


def test_rows_are_looked_up_with_the_configured_recipient_delimiter(tmp_path, sink: Sink):
    """recipient_delimiter = "-": a row for user@ applies to user-ext@ as a
    [policy.recipients] table does (the SQL lookup used '+' whatever the setting)."""
    db = _db(tmp_path / "p.sqlite", [("bob@example.test", '{"archive_to": '
                                      '"archive@example.test"}')])
    config = _config(db, 'recipient_delimiter = "-"\n')
    replies = handle_at_sink(config, [], _task("bob-lists@example.test"), sink.port)
    assert replies[0].startswith("250"), replies
    assert sorted(r for m in sink.received for r in m.recipients) == [
        "archive@example.test", "bob-lists@example.test"]


def test_a_slow_lookup_does_not_stop_the_event_loop(tmp_path, monkeypatch):
    """While one message's lookup waits for the database's lock, the worker's event
    loop (its other SMTP sessions) keeps running; the lookup completes once the lock
    is free."""
    from scanner.pipeline.processor import Listener, Processor
    from scanner.reinject.deliver import NextHop
    from scanner.scores import load_scores
    from scanner.testing.postfix import free_port

    db = _db(tmp_path / "p.sqlite", [("@example.test", '{"spam_lover": true}')])
    config = _config(db, "sql_timeout = 30.0\n")
    started = threading.Event()
    real = SqlPolicy._query

    def query(self: SqlPolicy, keys: list[str]) -> Any:
        started.set()  # only observes: the real query then waits for the real lock
        return real(self, keys)

    monkeypatch.setattr(SqlPolicy, "_query", query)
    hop = NextHop("127.0.0.1", free_port(), False, 1, 1, "t", True)
    proc = Processor(config, [], load_scores(), hop, "scanner.test")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    task = _task("b@example.test")

    async def go() -> bool:
        job = asyncio.create_task(proc.analyse(task, Listener(10024, "ESMTP", "")))
        try:
            reached = await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
            assert reached, "the lookup never started"
            return job.done()  # the loop ran while the lookup waits
        finally:
            holder.execute("ROLLBACK")
            holder.close()
            await job

    assert asyncio.run(go()) is False
    assert task.verdicts["b@example.test"].policy.spam_lover is True


def test_idn_rows_are_matched_in_a_label_form(tmp_path):
    """amavis keeps SQL keys in ACE (it converts the address's IDN before the lookup);
    an SMTPUTF8 message names the recipient in UTF-8: an ACE row matches it either way.
    A row written in UTF-8 is not found (README: store IDN patterns in A-label form)."""
    db = _db(tmp_path / "p.sqlite", [("@xn--bcher-kva.example", '{"spam_lover": true}'),
                                     ("@.пример.test", '{"virus_lover": true}')])
    policy = _policy(db)
    assert policy.override_for("Jörg@Bücher.example").spam_lover is True
    assert policy.override_for("u@xn--bcher-kva.example").spam_lover is True
    assert policy.override_for("u@mail.xn--e1afmkfd.test") is None


def test_postgresql_rows_text_or_jsonb_and_a_locked_table(pg_url, tmp_path, caplog):
    """PostgreSQL: settings as text or jsonb (psycopg hands over a dict: it made the
    lookup raise TypeError); a table locked longer than the timeout is an error (the
    statement_timeout), not a lookup that waits for ever."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS scanner_policy")
        con.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings JSONB)")
        con.execute("INSERT INTO scanner_policy VALUES ('Boss@example.test', "
                    "'{\"spam_lover\": true}'), ('@example.test', "
                    "'{\"archive_directory\": \"rel\", \"virus_lover\": true}')")
    policy = SqlPolicy(pg_url, _config(tmp_path / "unused.sqlite"))
    assert policy.override_for("boss+x@example.test").spam_lover is True
    other = policy.override_for("u@example.test")
    assert other.virus_lover is True and other.archive_directory is None
    assert "key 'archive_directory' ignored" in caplog.text
    with psycopg.connect(pg_url) as holder:
        holder.execute("LOCK TABLE scanner_policy IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(sqlmod.SqlLookupError, match="statement timeout"):
            quick = _config(tmp_path / "x", "sql_timeout = 1.0\n")
            SqlPolicy(pg_url, quick).override_for("v@example.test")
        holder.rollback()
    down = pg_url.replace("host=", "host=/nonexistent")
    with pytest.raises(sqlmod.SqlLookupError):
        SqlPolicy(down, _config(tmp_path / "x")).override_for("v@example.test")


def test_postgresql_one_connection_per_worker_opened_anew_after_a_restart(
        pg_server, pg_url, tmp_path, caplog):
    """A worker keeps its PostgreSQL connection for the lookups that follow (amavis
    keeps one per child; before, every lookup connected, a backend started for each);
    when the server restarted meanwhile, the next lookup connects again."""
    import psycopg

    others = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kept-test'"
    url = pg_url + "&application_name=kept-test"
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS scanner_policy")
        con.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings TEXT)")
        con.execute("INSERT INTO scanner_policy VALUES ('@example.test', "
                    "'{\"spam_lover\": true}')")
        policy = SqlPolicy(url, _config(tmp_path / "unused.sqlite"))
        for user in ("a", "b", "c"):
            assert policy.override_for(f"{user}@example.test").spam_lover is True
        assert con.execute(others).fetchone()[0] == 1
    pg_server.stop()
    pg_server.start()
    assert policy.override_for("d@example.test").spam_lover is True
    assert "policy SQL connection lost" in caplog.text
    with psycopg.connect(pg_url, autocommit=True) as con:
        assert con.execute(others).fetchone()[0] == 1
        policy.close()
        assert con.execute(others).fetchone()[0] == 0


def test_bare_user_rows_apply_to_local_recipients_only(tmp_path):
    """amavis's lookup_sql tries a bare user name ('postmaster', here 'postmaster@')
    only for a recipient local_domains calls local: outbound mail to another site's
    postmaster does not get our postmaster's policy."""
    from scanner.pipeline.processor import Listener, Processor
    from scanner.reinject.deliver import NextHop
    from scanner.scores import load_scores
    from scanner.testing.postfix import free_port

    db = _db(tmp_path / "p.sqlite", [("postmaster@", '{"spam_lover": true}'),
                                     ("@.", '{"virus_lover": true}')])
    config = _config(db, 'local_domains = ["example.test"]\n')
    hop = NextHop("127.0.0.1", free_port(), False, 1, 1, "t", True)
    proc = Processor(config, [], load_scores(), hop, "scanner.test")
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=message("sql"),
                envelope=Envelope("a@example.org", (Recipient("postmaster@example.test"),
                                                    Recipient("postmaster@remote.example"))))
    asyncio.run(proc.analyse(task, Listener(10024, "ESMTP", "")))
    assert task.verdicts["postmaster@example.test"].policy.spam_lover is True
    remote = task.verdicts["postmaster@remote.example"].policy
    assert remote.spam_lover is False and remote.virus_lover is True  # '@.' applies


def test_a_lookup_waiting_on_the_database_ends_with_the_message_timeout(tmp_path, sink):
    """A database that keeps its lock longer than server.message_timeout: the message
    gets its '451 ... timed out' at message_timeout, not when the database lets go."""
    import time

    from scanner.pipeline.processor import Listener, Processor
    from scanner.reinject.deliver import NextHop
    from scanner.scores import load_scores

    db = _db(tmp_path / "p.sqlite", [("@example.test", '{"spam_lover": true}')])
    config = loads(f'[server]\nmessage_timeout = 5.0\n[policy]\nsql_lookup = "sqlite:{db}"\n'
                   "sql_timeout = 60.0\n", "t.toml")
    hop = NextHop("127.0.0.1", sink.port, False, 2, 5, "scanner.test", True)
    proc = Processor(config, [], load_scores(), hop, "scanner.test")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")

    async def go() -> tuple[list[str], float]:
        started = time.monotonic()
        try:
            replies = await proc.handle(_task("b@example.test"), Listener(10024, "ESMTP", ""))
            return replies, time.monotonic() - started
        finally:  # lets the lookup's thread end, so asyncio.run does not wait for it
            holder.execute("ROLLBACK")
            holder.close()
            await proc._pool.close()

    replies, elapsed = asyncio.run(go())
    assert replies == ["451 4.5.0 Error in processing, id=00001-01, timed out"]
    assert elapsed < 30, elapsed  # the lock was held for the lookup's whole 60 s budget
    assert sink.received == []


def test_a_message_s_recipients_are_read_with_one_query(tmp_path, monkeypatch):
    """300 recipients (1200 keys, more than one SQLite statement takes): one
    connection for the message, each recipient with its own row; the next message to
    them is answered from the cache."""
    from scanner.pipeline.processor import Listener, Processor
    from scanner.reinject.deliver import NextHop
    from scanner.scores import load_scores
    from scanner.testing.postfix import free_port

    db = _db(tmp_path / "p.sqlite", [(f"u{i}@d{i}.example.test", f'{{"tag2_level": {i}}}')
                                     for i in range(0, 300, 3)])
    calls: list[int] = []
    real = SqlPolicy._query

    def query(self: SqlPolicy, keys: list[str] | None) -> Any:
        calls.append(len(keys or ()))
        return real(self, keys)

    monkeypatch.setattr(SqlPolicy, "_query", query)
    proc = Processor(_config(db), [], load_scores(),
                     NextHop("127.0.0.1", free_port(), False, 1, 1, "t", True), "scanner.test")
    rcpts = tuple(Recipient(f"u{i}@d{i}.example.test") for i in range(300))
    for _ in range(2):
        task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=message("sql"),
                    envelope=Envelope("a@example.org", rcpts))
        asyncio.run(proc.analyse(task, Listener(10024, "ESMTP", "")))
        for i in range(300):
            level = task.verdicts[f"u{i}@d{i}.example.test"].policy.tag2_level
            assert level == (float(i) if i % 3 == 0 else 6.31), i
    assert len(calls) == 1 and calls[0] > sqlmod.SQLITE_CHUNK, calls


def test_a_reload_during_a_lookup_keeps_its_rows_out_of_the_cache(tmp_path, monkeypatch):
    """SIGHUP while a lookup is reading: what it read may predate the change the SIGHUP
    announces, so it is used for its message but not cached."""
    db = _db(tmp_path / "p.sqlite", [("u@example.test", '{"spam_lover": true}')])
    policy = _policy(db)
    calls: list[int] = []
    real = SqlPolicy._query

    def query(self: SqlPolicy, keys: list[str] | None) -> Any:
        rows = real(self, keys)
        calls.append(1)
        if len(calls) == 1:
            self.reload()  # the SIGHUP comes after the read, before the result is kept
        return rows

    monkeypatch.setattr(SqlPolicy, "_query", query)
    assert policy.override_for("u@example.test").spam_lover is True
    assert policy.override_for("u@example.test").spam_lover is True
    assert policy.override_for("u@example.test").spam_lover is True
    assert len(calls) == 2  # read again after the reload, then cached


def test_a_database_path_with_uri_characters(tmp_path):
    """The file is opened read-only through an SQLite URI: '#', '?' and '%' in its path
    are the file's name, not a fragment, a query or an escape."""
    folder = tmp_path / "a#b?c%41d"
    folder.mkdir()
    db = _db(folder / "p.sqlite", [("@example.test", '{"spam_lover": true}')])
    assert _policy(db).override_for("u@example.test").spam_lover is True

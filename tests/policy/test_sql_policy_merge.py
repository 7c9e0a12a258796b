"""Policy SQL rows merged field by field, as amavis's lookup_sql_field reads its
``ORDER BY users.priority DESC`` query: each key from the first row that sets it, a
``priority`` column ordering the rows when the table has one, a key no row sets left to
the configuration; the timeout as a configuration key."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from scanner.config import loads
from scanner.errors import ConfigError
from scanner.policy.sql import SqlLookupError, SqlPolicy
from scanner.task import Envelope, Recipient, Task
from scanner.testing.sink import Sink
from tests.helpers import handle_at_sink, message


def _db(path: Path, rows: list[tuple[Any, ...]], priority: bool = False) -> Path:
    column = ", priority INTEGER" if priority else ""
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings{column})")
        marks = "?, ?, ?" if priority else "?, ?"
        conn.executemany(f"INSERT INTO scanner_policy VALUES ({marks})", rows)
    conn.close()
    return path


def _config(db: Path, extra: str = "", tables: str = "") -> Any:
    return loads(f'[policy]\nsql_lookup = "sqlite:{db}"\n{extra}{tables}', "t.toml")


def _policy(db: Path) -> SqlPolicy:
    return SqlPolicy(f"sqlite:{db}", _config(db))


def test_each_key_comes_from_the_most_specific_row_that_sets_it(tmp_path):
    """amavis: user+ext@dom, user@dom, @dom, @. rows, each field from the first where
    it is not NULL. Before, the most specific row was taken whole: tag2_level and
    virus_lover of the less specific rows were lost."""
    db = _db(tmp_path / "p.sqlite", [
        ("u+ext@example.test", '{"spam_lover": true, "tag2_level": null}'),
        ("u@example.test", '{"tag2_level": 4.0, "virus_lover": null}'),
        ("@example.test", '{"virus_lover": true, "tag2_level": 9.0, "spam_lover": false}'),
        ("@.", '{"bad_header_lover": true, "virus_lover": false}'),
    ])
    row = _policy(db).override_for("u+ext@example.test")
    assert (row.spam_lover, row.tag2_level, row.virus_lover, row.bad_header_lover) == \
        (True, 4.0, True, True)
    other = _policy(db).override_for("x@example.test")
    assert (other.spam_lover, other.tag2_level, other.virus_lover) == (False, 9.0, True)


def test_a_key_that_fails_its_check_falls_through_to_the_next_row(tmp_path, caplog):
    db = _db(tmp_path / "p.sqlite", [("u@example.test", '{"tag2_level": "5.0"}'),
                                     ("@example.test", '{"tag2_level": 7.0}')])
    assert _policy(db).override_for("u@example.test").tag2_level == 7.0
    assert "policy SQL row 'u@example.test': key 'tag2_level' ignored" in caplog.text


def test_a_key_no_row_sets_keeps_the_configuration_s_value(tmp_path):
    """The merged rows apply on top of the configuration's recipient table and
    [policy]: a key NULL in every row is the configuration's (amavis's fall-through
    to its static lookup tables)."""
    from scanner.pipeline.processor import Listener, Processor
    from scanner.reinject.deliver import NextHop
    from scanner.scores import load_scores
    from scanner.testing.postfix import free_port

    db = _db(tmp_path / "p.sqlite", [("u@example.test", '{"spam_lover": null}'),
                                     ("@example.test", '{"kill_level": 20.0}')])
    config = _config(db, "tag_level = 1.5\n",
                     '[policy.recipients."u@example.test"]\nspam_lover = true\n'
                     'tag2_level = 5.5\n')
    hop = NextHop("127.0.0.1", free_port(), False, 1, 1, "t", True)
    proc = Processor(config, [], load_scores(), hop, "scanner.test")
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=message("sql"),
                envelope=Envelope("a@example.org", (Recipient("u@example.test"),)))
    asyncio.run(proc.analyse(task, Listener(10024, "ESMTP", "")))
    policy = task.verdicts["u@example.test"].policy
    assert (policy.spam_lover, policy.kill_level, policy.tag2_level, policy.tag_level) == \
        (True, 20.0, 5.5, 1.5)


def test_a_priority_column_orders_the_rows(tmp_path):
    """amavis's query is ORDER BY users.priority DESC: a domain row with a higher
    priority than the user's row wins the keys both set. A NULL priority comes last;
    rows of equal priority go from the most specific pattern."""
    db = _db(tmp_path / "p.sqlite", [
        ("u@example.test", '{"spam_lover": false, "virus_lover": true}', 1),
        ("@example.test", '{"spam_lover": true, "tag2_level": 3.0}', 9),
        ("@.", '{"tag2_level": 8.0, "kill_level": 30.0, "banned_lover": true}', None),
        ("u@", '{"kill_level": 12.0}', 1),
        ("@.test", '{"kill_level": 14.0, "banned_lover": false}', 1),
    ], priority=True)
    row = _policy(db).override_for("u@example.test")
    assert (row.spam_lover, row.virus_lover, row.tag2_level) == (True, True, 3.0)
    assert row.kill_level == 12.0  # u@ before @.test at the same priority
    assert row.banned_lover is False  # '@.' with a NULL priority comes last


def test_a_priority_that_is_not_a_number_is_reported(tmp_path):
    db = _db(tmp_path / "p.sqlite", [("u@example.test", '{"spam_lover": true}', "high"),
                                     ("@example.test", '{"spam_lover": false}', 0)],
             priority=True)
    assert _policy(db).override_for("u@example.test").spam_lover is False
    assert _policy(db).audit() == ["policy SQL row 'u@example.test': priority 'high' is "
                                   "not a number; the row comes after every row that has one"]


def test_the_rows_of_a_recipient_are_read_with_one_query(tmp_path, monkeypatch):
    db = _db(tmp_path / "p.sqlite", [("u@example.test", '{"spam_lover": true}', 1),
                                     ("@example.test", '{"tag2_level": 3.0}', 2)],
             priority=True)
    calls: list[Any] = []
    real = SqlPolicy._query

    def query(self: SqlPolicy, keys: list[str] | None) -> Any:
        calls.append(keys)
        return real(self, keys)

    monkeypatch.setattr(SqlPolicy, "_query", query)
    row = _policy(db).override_for("u@example.test")
    assert (row.spam_lover, row.tag2_level) == (True, 3.0)
    assert len(calls) == 1


def test_postgresql_rows_merge_by_priority(pg_url, tmp_path):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS scanner_policy")
        con.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings JSONB, "
                    "priority INTEGER NOT NULL DEFAULT 7)")
        con.execute("INSERT INTO scanner_policy VALUES "
                    "('u@example.test', '{\"spam_lover\": false, \"tag2_level\": null}', 8), "
                    "('@example.test', '{\"spam_lover\": true, \"virus_lover\": true}', 9), "
                    "('@.', '{\"tag2_level\": 4.5}', 0)")
    row = SqlPolicy(pg_url, _config(tmp_path / "unused.sqlite")).override_for("u@example.test")
    assert (row.spam_lover, row.virus_lover, row.tag2_level) == (True, True, 4.5)


@pytest.mark.parametrize(("value", "problem"), [
    ("0.5", "is too small; minimum is 1.0"), ("61.0", "is too large; maximum is 60.0"),
    ("\"5\"", "must be a number")])
def test_sql_timeout_is_checked(tmp_path, value, problem):
    """policy.sql_timeout (it was a fixed 5 s): at least 1 s (libpq's connect_timeout
    counts whole seconds, 0 meaning for ever), at most 60 s."""
    assert _config(tmp_path / "p.sqlite", "sql_timeout = 2.5\n").policy.sql_timeout == 2.5
    with pytest.raises(ConfigError, match=f"'policy.sql_timeout' = .*{problem}|"
                                          f"'policy.sql_timeout' {problem}"):
        _config(tmp_path / "p.sqlite", f"sql_timeout = {value}\n")


def test_sql_timeout_is_not_a_bank_or_recipient_key(tmp_path):
    """It is the lookup's own setting (read before any recipient's policy is known)."""
    with pytest.raises(ConfigError, match=r"unknown key 'policy_banks\.\"X\"\.sql_timeout'"):
        _config(tmp_path / "p.sqlite", "", "[policy_banks.X]\nsql_timeout = 2.0\n")


def test_a_slow_sqlite_statement_ends_at_sql_timeout_and_defers(tmp_path, sink: Sink):
    """sql_timeout bounds the SQLite statement too, as PostgreSQL's statement_timeout
    does (before, only the wait for a lock: a slow statement ran to its end, here
    several seconds, and its row applied). The table is a view that takes ~7 s."""
    db = tmp_path / "p.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE VIEW scanner_policy AS WITH RECURSIVE c(x) AS (SELECT 1 UNION "
                     "ALL SELECT x + 1 FROM c WHERE x < 20000000) SELECT '@example.test' AS "
                     "pattern, '{\"spam_lover\": true}' AS settings FROM c WHERE x = 20000000")
    conn.close()
    config = _config(db, "sql_timeout = 1.0\n")
    with pytest.raises(SqlLookupError, match="interrupted"):
        SqlPolicy(f"sqlite:{db}", config).override_for("u@example.test")
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=message("sql"),
                envelope=Envelope("a@example.org", (Recipient("u@example.test"),)))
    assert handle_at_sink(config, [], task, sink.port) == \
        ["451 4.5.0 Error in processing, id=00001-01"]
    assert sink.received == []


def test_a_bad_row_is_logged_once_per_query_not_per_recipient(tmp_path, caplog):
    """A catch-all row with a bad key matches every recipient of a message: one log
    line for the message's query (before: one per recipient, 300 for a message to 300)."""
    db = _db(tmp_path / "p.sqlite", [("@.", '{"tag2_level": "high", "spam_lover": true}')])
    wanted = [(f"u{i}@example.test", True) for i in range(5)]
    found = _policy(db).overrides_for(wanted)
    assert all(found[a].spam_lover is True for a, _ in wanted)
    assert caplog.text.count("key 'tag2_level' ignored") == 1, caplog.text

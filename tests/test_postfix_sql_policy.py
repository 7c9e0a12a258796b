"""Per-recipient policy rows from SQL through the real Postfix: while the database cannot
be read the message waits in Postfix's queue (451), and once it can, it is delivered
once, with the row's policy (its archive copy) applied, never without it."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator

import pytest

from scanner.testing.postfix import make_base_dir
from tests.postfix_stack import Stack, require_postfix, wait_ids

pytestmark = [pytest.mark.postfix, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack_and_dir() -> Iterator[tuple[Stack, object]]:
    require_postfix()
    data = make_base_dir("scanner-sqlpolicy-")
    db = data / "policy.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, "
                     "settings TEXT NOT NULL)")
        conn.execute("INSERT INTO scanner_policy VALUES (?, ?)",
                     ("bob@example.test", f'{{"archive_directory": "{data / "archive"}"}}'))
    conn.close()
    s = Stack(extra=f'\n[policy]\nsql_lookup = "sqlite:{db}"\n').start()
    yield s, data
    s.remove()
    shutil.rmtree(data, ignore_errors=True)


def _msg(mid: str) -> bytes:
    return (f"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: sql {mid}\r\n"
            f"Message-ID: <{mid}@example.org>\r\n\r\nhello\r\n").encode()


def test_an_unreadable_policy_database_defers_until_it_is_back(stack_and_dir):
    stack, data = stack_and_dir
    db, away = data / "policy.sqlite", data / "policy.sqlite.away"
    db.rename(away)  # the file removed (a botched migration, a volume not mounted)
    try:
        stack.postfix.send("alice@example.test", "bob@example.test", _msg("sqldown1"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and \
                "policy SQL lookup for <bob@example.test> failed" not in "\n".join(
                    stack.filter.log_lines()):
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "451 4.5.0" not in stack.postfix.log_text():
            time.sleep(0.2)
        assert "451 4.5.0 Error in processing" in stack.postfix.log_text()
        assert stack.postfix.queue(), "the message must wait in Postfix's queue"
        assert not stack.postfix.maildir_messages("bob")
    finally:
        away.rename(db)
    ids = wait_ids(stack, {"<sqldown1@example.org>"}, timeout=60)
    assert ids["<sqldown1@example.org>"] == 1
    archived = list((data / "archive").rglob("archive-*.gz"))
    assert len(archived) == 1, "the row's archive_directory applied to the retry"

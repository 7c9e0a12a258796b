"""The PostgreSQL index behind the same interface, against a private throw-away server.

Skipped when psycopg or the PostgreSQL server binaries are missing
(``apt-get install postgresql``; ``pip install 'psycopg[binary]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.quarantine.config import QuarantineConfig
from scanner.quarantine.record import AlreadyReleased
from scanner.quarantine.release import release
from scanner.quarantine.store import Quarantine
from scanner.reinject.deliver import NextHop
from scanner.testing.sink import Sink

from .util import store

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")


@pytest.fixture
def pgq(pg_url: str, tmp_path: Path) -> Quarantine:
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS quarantine, quarantine_rcpt")
    return Quarantine(QuarantineConfig(directory=str(tmp_path / "q"), index=pg_url),
                      hostname="filter1.test")


def test_round_trip_and_filters(pgq: Quarantine):
    a = store(pgq, recipients=["Bob@example.test"])
    b = store(pgq, category="VIRUS", recipients=["carol@example.test"], subject="caf\u00e9")
    assert pgq.get(b.mail_id).subject == "caf\u00e9"
    assert pgq.get(a.mail_id).secret_id == a.secret_id
    assert [r.mail_id for r in pgq.list()] == [a.mail_id, b.mail_id]
    assert [r.mail_id for r in pgq.list(category="virus")] == [b.mail_id]
    assert [r.mail_id for r in pgq.list(rcpt="bob@EXAMPLE.test")] == [a.mail_id]
    assert pgq.list(since=time.time() + 10) == []
    assert "password" not in pgq.index.location


def test_claim_is_exclusive_and_expire_respects_it(pgq: Quarantine):
    rec = store(pgq)
    token = pgq.index.claim(rec.mail_id, "one")
    assert token and pgq.index.claim(rec.mail_id, "two") is None
    assert pgq.expire(0) == 0
    assert pgq.index.finish(rec.mail_id, token, ["bob@example.test"], ["250 ok"])
    assert pgq.get(rec.mail_id).state == "released"
    assert pgq.expire(0) == 1 and pgq.list() == []


def test_release_through_postgres_index(pgq: Quarantine, sink: Sink, hop: NextHop):
    rec = store(pgq)
    replies = asyncio.run(release(pgq, hop, rec.mail_id, recipients=None,
                                  requested_by="pg"))
    assert replies[0].startswith("250")
    with pytest.raises(AlreadyReleased):
        asyncio.run(release(pgq, hop, rec.mail_id, recipients=None, requested_by="pg"))
    assert len(sink.wait_for(1)) == 1


def test_an_index_user_without_create_uses_tables_made_for_it(pgq: Quarantine,
                                                              pg_url: str,
                                                              tmp_path: Path):
    """PostgreSQL checks the CREATE privilege before it finds a table exists: a user
    with only the rights the index needs on tables an administrator made failed."""
    store(pgq)  # the tables exist now
    with _limited_user(pg_url) as url:
        limited = Quarantine(QuarantineConfig(directory=str(tmp_path / "q"), index=url),
                             hostname="filter2.test")
        rec = store(limited)
        assert limited.get(rec.mail_id).mail_id == rec.mail_id
        assert len(limited.list()) == 2


@contextlib.contextmanager
def _limited_user(pg_url: str) -> Iterator[str]:
    """The URL of a role with only the rights the index needs on the existing tables
    (no CREATE in the schema, not their owner); dropped afterwards."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("DROP ROLE IF EXISTS index_user")
        con.execute("CREATE ROLE index_user LOGIN")
        con.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        con.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON quarantine, quarantine_rcpt "
                    "TO index_user")
    try:
        yield pg_url.replace("scanner@", "index_user@")
    finally:
        with psycopg.connect(pg_url, autocommit=True) as con:
            con.execute("DROP OWNED BY index_user")
            con.execute("DROP ROLE index_user")


def _old_tables(pg_url: str) -> None:
    """The tables as releases before the held_for column made them."""
    from scanner.quarantine.index import SCHEMA

    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS quarantine, quarantine_rcpt")
        for statement in (SCHEMA[0].replace(",\n        held_for TEXT", ""), *SCHEMA[1:]):
            con.execute(statement)


def _has_held_for(pg_url: str) -> bool:
    with psycopg.connect(pg_url, autocommit=True) as con:
        return con.execute("SELECT count(*) FROM information_schema.columns WHERE "
                           "table_name = 'quarantine' AND column_name = 'held_for'"
                           ).fetchone()[0] == 1


def test_older_tables_get_the_held_for_column(pg_url: str, tmp_path: Path):
    _old_tables(pg_url)
    assert not _has_held_for(pg_url)
    q = Quarantine(QuarantineConfig(directory=str(tmp_path / "q"), index=pg_url))
    rec = q.store(mail_id="abcdefghijkl", raw=b"Subject: x\r\n\r\nx\r\n", sender="a@b.example",
                  recipients=["bob@example.test", "carol@example.test"], category="SPAM",
                  score=None, symbols=[], subject="x", message_id="", client_addr=None,
                  policy_bank="", held_for=["carol@example.test"])
    assert _has_held_for(pg_url) and q.index.missing == frozenset()
    assert q.get(rec.mail_id).held_for == ["carol@example.test"]


def test_a_user_who_may_not_alter_older_tables_reads_null(pg_url: str, tmp_path: Path):
    """The filter's role has only SELECT, INSERT, UPDATE and DELETE on tables made by
    an older release: it cannot add the column, so it reads NULL and writes rows
    without it, and nothing fails."""
    _old_tables(pg_url)
    with _limited_user(pg_url) as url:
        limited = Quarantine(QuarantineConfig(directory=str(tmp_path / "q"), index=url),
                             hostname="filter2.test")
        rec = store(limited, recipients=["bob@example.test"])
        assert limited.index.missing == frozenset({"held_for"})
        assert limited.get(rec.mail_id).held_for is None
        assert not _has_held_for(pg_url)

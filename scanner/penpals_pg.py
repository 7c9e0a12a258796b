"""The pen pals memory in PostgreSQL, shared by several filter hosts.

Behind MX records, a reply often reaches another filter host than the one that saw the
outgoing message; amavis keeps its pen pals in its SQL logging database for that reason.
``[checks.settings.penpals] database = "postgresql://..."`` puts the memory there too.
The SQLite store's two tables, named for a database they may share with others (the
quarantine index, amavis's), created if missing::

    penpals_sent (local, remote, at)              PRIMARY KEY (local, remote)
    penpals_message_ids (message_id, local, at)   PRIMARY KEY (message_id)

The SQLite store's rules, in PostgreSQL's terms: readers never wait for writers (MVCC,
look-ups outside any transaction); a recording is one transaction that writes its rows
in one order (sorted), so two hosts recording at once never deadlock; a purge deletes
only rows no writer holds (``FOR UPDATE SKIP LOCKED``), so it waits for none. ``at``
only moves forward, so a host whose clock is a little behind never makes a
correspondence look older. An address or Message-ID with a NUL (which PostgreSQL's
text cannot hold) or longer than an index row allows is neither recorded nor looked up.

Bounded: a connection is made within ``timeout`` seconds (libpq's minimum is 2) and
every statement ends within it (``statement_timeout``). After a failure the store does
not try again for :data:`RETRY_AFTER` seconds (calls fail at once meanwhile), so a
database that is down or hanging costs one wait per process and period, not one per
message. Calls block: the check runs them in a thread of their own. One connection per
process (autocommit), opened on first use, never used across a fork.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from scanner.dburl import redact
from scanner.errors import ConfigError
from scanner.penpals_store import Found, PenPalsUnavailable, Store
from scanner.pgsql import connect_bounded, create_schema

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS penpals_sent (
        local TEXT NOT NULL, remote TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (local, remote))""",
    "CREATE INDEX IF NOT EXISTS penpals_sent_at ON penpals_sent (at)",
    """CREATE TABLE IF NOT EXISTS penpals_message_ids (
        message_id TEXT NOT NULL PRIMARY KEY, local TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS penpals_message_ids_at ON penpals_message_ids (at)",
)
TABLES = ("penpals_sent", "penpals_message_ids")
LOCK_KEY = 0x5C4A7E2  # advisory lock serialising schema creation between hosts
RETRY_AFTER = 10.0
"""Seconds after a failure before the database is tried again."""
PURGE_BATCH = 5000  # rows per DELETE, each within statement_timeout
MAX_KEY = 1000
"""Longest address or Message-ID stored, in octets (RFC 5321 allows 256 for a path)."""
_SENT = ("INSERT INTO penpals_sent (local, remote, at) VALUES (%s, %s, %s) "
         "ON CONFLICT (local, remote) DO UPDATE SET at = GREATEST(penpals_sent.at, excluded.at)")
_MESSAGE_ID = ("INSERT INTO penpals_message_ids (message_id, local, at) VALUES (%s, %s, %s) "
               "ON CONFLICT (message_id) DO UPDATE SET local = excluded.local, at = excluded.at")
_LOOKUP = ("SELECT (SELECT at FROM penpals_sent WHERE local = %s AND remote = %s AND at >= %s),"
           " (SELECT max(at) FROM penpals_message_ids WHERE local = %s AND at >= %s"
           " AND message_id = ANY(%s::text[]))")
_PURGE = ("DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE at < %s "
          "LIMIT %s FOR UPDATE SKIP LOCKED)")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigError("checks.settings.penpals.database is a PostgreSQL URL but the "
                          "psycopg package is not installed (pip install 'psycopg[binary]')"
                          ) from None
    return psycopg


class PostgresStore(Store):
    """The memory in the database a ``postgresql://`` URL names; see the module."""

    threaded: ClassVar[bool] = True

    def __init__(self, dsn: str, max_age: float, timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(max_age)
        self._clock = clock
        self._psycopg = _psycopg()
        self.dsn = dsn
        self.location = redact(dsn)
        self.timeout = timeout
        self._conn: Any = None
        self._pid = 0
        self._down_until = 0.0
        self._why = ""

    def probe(self) -> None:
        """Connect and create the tables if missing; raises PenPalsUnavailable."""
        with self._using():
            pass

    def _db(self) -> Any:
        if self._pid != os.getpid():
            self._conn = None  # the parent's: closing it here would end its session
        if self._conn is not None and not self._conn.closed:
            return self._conn
        wait = self._down_until - self._clock()
        if wait > 0:
            raise PenPalsUnavailable(f"{self._why} (next attempt in {wait:.0f} s)")
        con = connect_bounded(self._psycopg, self.dsn, self.timeout, autocommit=True)
        self._conn, self._pid = con, os.getpid()
        create_schema(con, LOCK_KEY, SCHEMA, TABLES)
        return con

    @contextlib.contextmanager
    def _using(self) -> Iterator[Any]:
        """The connection; a database error closes it, keeps the database from being
        tried for RETRY_AFTER seconds and becomes PenPalsUnavailable."""
        try:
            yield self._db()
        except self._psycopg.Error as exc:
            self._why = redact(" ".join(str(exc).split())) or type(exc).__name__
            self._down_until = self._clock() + RETRY_AFTER
            if self._conn is not None and self._pid == os.getpid():
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None
            raise PenPalsUnavailable(self._why) from exc

    def _record(self, local: str, remotes: list[str], message_id: str | None,
                now: float) -> None:
        if not _storable(local):
            return
        remotes = [r for r in remotes if _storable(r)]
        message_id = message_id if message_id and _storable(message_id) else None
        with self._using() as con, con.transaction():
            if remotes:
                with con.cursor() as cur:
                    cur.executemany(_SENT, [(local, r, now) for r in remotes])
            if message_id:
                con.execute(_MESSAGE_ID, (message_id, local, now))

    def _lookup(self, local: str, remote: str, ids: list[str], oldest: float) -> Found:
        if not _storable(local):
            return Found()
        remote = remote if _storable(remote) else ""  # "": matches no row
        ids = [i for i in ids if _storable(i)]
        with self._using() as con:
            wrote, replied = con.execute(_LOOKUP, (local, remote, oldest, local, oldest,
                                                   ids)).fetchone()
        return Found(wrote, replied)

    def _purge(self, oldest: float) -> int:
        gone = 0
        with self._using() as con:
            for table, key in (("penpals_sent", "local, remote"),
                               ("penpals_message_ids", "message_id")):
                sql = _PURGE.format(table=table, key=key)
                while (n := con.execute(sql, (oldest, PURGE_BATCH)).rowcount) > 0:
                    gone += n
                    if n < PURGE_BATCH:
                        break
        return gone

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None


def _storable(text: str) -> bool:
    """Whether ``text`` can be a key here: no NUL (PostgreSQL's text cannot hold it)
    and at most :data:`MAX_KEY` octets (a B-tree row holds about 2.7 kB: two such
    addresses fit); a crafted header must not look like a database failure. Such a
    value is never recorded, so it is never found either."""
    return "\x00" not in text and len(text.encode("utf-8", "replace")) <= MAX_KEY

"""The pen pals memory: who our users wrote to, and the Message-IDs of what they sent.

One SQLite file shared by every worker (WAL journal, so readers never wait for the
writer). Two tables:

* ``sent(local, remote, at)``: the last time local user ``local`` sent mail to
  ``remote``; one row per pair, updated in place;
* ``message_ids(message_id, local, at)``: Message-IDs of mail our users sent, so a reply
  that names one in In-Reply-To or References can be recognised.

Rows older than ``max_age`` seconds are ignored and removed now and then. Addresses are
compared in lower case, without the recipient delimiter's extension. Each process opens
its own connection on first use (never across a fork).

:class:`Store` is what the back ends share; a ``postgresql://`` URL instead of a file
gives the PostgreSQL store several filter hosts share (:mod:`scanner.penpals_pg`,
chosen by :func:`open_store`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from scanner.addresses import split_localpart
from scanner.dburl import is_postgresql, redact
from scanner.errors import ConfigError
from scanner.idn import fold_address, fold_localpart

SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    local TEXT NOT NULL, remote TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (local, remote)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS message_ids (
    message_id TEXT NOT NULL PRIMARY KEY, local TEXT NOT NULL, at REAL NOT NULL)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_ids_at ON message_ids (at);
CREATE INDEX IF NOT EXISTS sent_at ON sent (at);
"""
PURGE_EVERY = 500  # recorded messages between removals of expired rows
MAX_IDS = 50  # Message-IDs of In-Reply-To/References looked up per message


@dataclass(frozen=True, slots=True)
class Found:
    """What the memory knows about mail from ``remote`` to local user ``local``."""

    wrote_at: float | None = None  # local last wrote to remote
    replied_at: float | None = None  # the newest of local's messages this one refers to


def normalise(address: str, delimiter: str = "+") -> str:
    """``User+Ext@Example.COM`` -> ``user@example.com``, as amavis keeps addresses for
    its pen pals (``find_or_save_addr``): the domain in A-label form, only the ASCII
    letters of the local part lower-cased (:func:`scanner.idn.fold_address`)."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at:
        return fold_localpart(address.strip())
    return fold_address(f"{split_localpart(local, delimiter)[0]}@{domain}")


class PenPalsUnavailable(Exception):
    """The pen pals database cannot be used now (down, too slow, refusing us)."""


class Store(ABC):
    """Record outgoing mail, look up incoming mail; see the module docstring.

    ``threaded``: the store's calls may wait on the network and belong off the event
    loop (the check runs them in a thread of their own); ``location``: the database as
    log lines name it (no password)."""

    threaded: ClassVar[bool] = False
    location: str

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._recorded = 0

    def record(self, local: str, remotes: Iterable[str], message_id: str | None,
               now: float | None = None) -> None:
        """Local user ``local`` sent a message (``message_id``) to ``remotes``."""
        now = time.time() if now is None else now
        # one order for every writer: two transactions never wait for each other's rows
        self._record(local, sorted(set(remotes)), message_id, now)
        self._recorded += 1
        if self._recorded % PURGE_EVERY == 0:
            self.purge(now)

    def lookup(self, local: str, remote: str, referenced: Sequence[str],
               now: float | None = None) -> Found:
        """What ``local`` sent to ``remote`` lately, and whether ``referenced`` names one
        of ``local``'s messages."""
        now = time.time() if now is None else now
        ids = list(dict.fromkeys(referenced))[-MAX_IDS:]
        return self._lookup(local, remote, ids, now - self.max_age)

    def purge(self, now: float | None = None) -> int:
        """Remove rows older than ``max_age``; how many went."""
        return self._purge((time.time() if now is None else now) - self.max_age)

    def probe(self) -> None:
        """Make sure the database can be used (a network database: connect); raises
        as the other calls do. The SQLite file is opened on first use instead."""
        return None

    @abstractmethod
    def _record(self, local: str, remotes: list[str], message_id: str | None,
                now: float) -> None: ...

    @abstractmethod
    def _lookup(self, local: str, remote: str, ids: list[str], oldest: float) -> Found: ...

    @abstractmethod
    def _purge(self, oldest: float) -> int: ...

    @abstractmethod
    def close(self) -> None: ...


class PenPalsStore(Store):
    """The SQLite store: one file per host, shared by its workers."""

    def __init__(self, path: str, max_age: float, busy_timeout: float = 0.5) -> None:
        super().__init__(max_age)
        self.path = self.location = path
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                   isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _record(self, local: str, remotes: list[str], message_id: str | None,
                now: float) -> None:
        db = self._db()
        with _transaction(db):
            db.executemany(
                "INSERT INTO sent (local, remote, at) VALUES (?, ?, ?) "
                "ON CONFLICT (local, remote) DO UPDATE SET at = excluded.at",
                [(local, r, now) for r in remotes])
            if message_id:
                db.execute("INSERT OR REPLACE INTO message_ids (message_id, local, at) "
                           "VALUES (?, ?, ?)", (message_id, local, now))

    def _lookup(self, local: str, remote: str, ids: list[str], oldest: float) -> Found:
        db = self._db()
        row = db.execute("SELECT at FROM sent WHERE local = ? AND remote = ? AND at >= ?",
                         (local, remote, oldest)).fetchone()
        replied = None
        if ids:
            marks = ",".join("?" * len(ids))
            hit = db.execute(f"SELECT max(at) FROM message_ids WHERE local = ? AND at >= ? "
                             f"AND message_id IN ({marks})", (local, oldest, *ids)).fetchone()
            replied = hit[0] if hit else None
        return Found(row[0] if row else None, replied)

    def _purge(self, oldest: float) -> int:
        db = self._db()
        with _transaction(db):
            gone = db.execute("DELETE FROM sent WHERE at < ?", (oldest,)).rowcount
            gone += db.execute("DELETE FROM message_ids WHERE at < ?", (oldest,)).rowcount
        return gone

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None


def open_store(database: str, max_age: float, timeout: float) -> Store:
    """The store ``database`` names: a ``postgresql://`` URL (``timeout`` bounds each
    connection and statement) or a SQLite file. Another URL is refused, not taken for a
    file name (which would put its password into a directory name)."""
    if "://" in database and not is_postgresql(database):
        raise ConfigError(f"'checks.settings.penpals.database' = {redact(database)!r}: use "
                          "a SQLite file path or 'postgresql://user@host/dbname'")
    if is_postgresql(database):
        from scanner.penpals_pg import PostgresStore

        return PostgresStore(database, max_age, timeout)
    return PenPalsStore(database, max_age)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")

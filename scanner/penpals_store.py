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
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scanner.addresses import split_localpart
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


class PenPalsStore:
    """Record outgoing mail, look up incoming mail; see the module docstring."""

    def __init__(self, path: str, max_age: float, busy_timeout: float = 0.5) -> None:
        self.path = path
        self.max_age = max_age
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._recorded = 0

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

    def record(self, local: str, remotes: Iterable[str], message_id: str | None,
               now: float | None = None) -> None:
        """Local user ``local`` sent a message (``message_id``) to ``remotes``."""
        now = time.time() if now is None else now
        db = self._db()
        with _transaction(db):
            db.executemany(
                "INSERT INTO sent (local, remote, at) VALUES (?, ?, ?) "
                "ON CONFLICT (local, remote) DO UPDATE SET at = excluded.at",
                [(local, r, now) for r in remotes])
            if message_id:
                db.execute("INSERT OR REPLACE INTO message_ids (message_id, local, at) "
                           "VALUES (?, ?, ?)", (message_id, local, now))
        self._recorded += 1
        if self._recorded % PURGE_EVERY == 0:
            self.purge(now)

    def lookup(self, local: str, remote: str, referenced: Sequence[str],
               now: float | None = None) -> Found:
        """What ``local`` sent to ``remote`` lately, and whether ``referenced`` names one
        of ``local``'s messages."""
        now = time.time() if now is None else now
        oldest = now - self.max_age
        db = self._db()
        row = db.execute("SELECT at FROM sent WHERE local = ? AND remote = ? AND at >= ?",
                         (local, remote, oldest)).fetchone()
        replied = None
        ids = list(dict.fromkeys(referenced))[-MAX_IDS:]
        if ids:
            marks = ",".join("?" * len(ids))
            hit = db.execute(f"SELECT max(at) FROM message_ids WHERE local = ? AND at >= ? "
                             f"AND message_id IN ({marks})", (local, oldest, *ids)).fetchone()
            replied = hit[0] if hit else None
        return Found(row[0] if row else None, replied)

    def purge(self, now: float | None = None) -> int:
        """Remove rows older than ``max_age``; how many went."""
        oldest = (time.time() if now is None else now) - self.max_age
        db = self._db()
        with _transaction(db):
            gone = db.execute("DELETE FROM sent WHERE at < ?", (oldest,)).rowcount
            gone += db.execute("DELETE FROM message_ids WHERE at < ?", (oldest,)).rowcount
        return gone

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")

"""The SQLite quarantine index (the default): WAL mode, busy timeout, one file.

A connection is opened per operation, so the index works from threads, forked
workers and cron jobs at the same time without sharing handles. When root (cron, the
CLI) creates or touches the database, its files are given to the owner of the
directory, so the daemon running as another user can still write them. The database
is created readable by owner and group only (SQLite gives its journals the same mode):
it holds the envelopes and subjects of held mail and the secret_ids that authorise
releases, and may live outside the 0750 quarantine directory.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from typing import Any

from scanner.quarantine.index import ADDED_COLUMNS, SCHEMA, Index, Run
from scanner.quarantine.record import IndexUnavailable, QuarantineError

BUSY_TIMEOUT_MS = 30000
DB_MODE = 0o640


class SqliteIndex(Index):
    """Index rows in ``path`` (created with the schema on first write)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.location = path
        self._ready = False

    def _exists(self) -> bool:
        """Whether the index file exists; an index this user may not read is an error,
        not an empty quarantine (``os.path.exists`` says False for both)."""
        try:
            os.stat(self.path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise IndexUnavailable(f"quarantine index {self.path}: {exc.strerror}") from exc
        return True

    def _connect(self) -> sqlite3.Connection:
        try:
            parent = os.path.dirname(self.path) or "."
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o750, exist_ok=True)
            _create_private(self.path)
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                  isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise IndexUnavailable(f"cannot open the quarantine index {self.path}: {exc}") from exc
        try:
            con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            con.execute("PRAGMA synchronous = FULL")
            if not self._ready:
                self._create(con)
        except sqlite3.Error as exc:
            con.close()
            raise IndexUnavailable(f"quarantine index {self.path}: {exc}") from exc
        return con

    def _create(self, con: sqlite3.Connection) -> None:
        have = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
        if {"quarantine", "quarantine_rcpt"} <= have:  # readers need no write access
            self._upgrade(con)
            self._ready = True
            return
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA:
                con.execute(statement)
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
        self._ready = True

    def _upgrade(self, con: sqlite3.Connection) -> None:
        """Add the columns of :data:`ADDED_COLUMNS` an older index lacks; without write
        access to it, note them in :attr:`missing` (read as NULL) instead."""
        if not _lacking(con):
            return
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                for name, kind in _lacking(con):  # again: another process may have won
                    con.execute(f"ALTER TABLE quarantine ADD COLUMN {name} {kind}")
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise
        except sqlite3.OperationalError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF != sqlite3.SQLITE_READONLY:
                raise
            self.missing = frozenset(name for name, _ in _lacking(con))
            return
        self._fix_owner()

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[Run]:
        con = self._connect()

        def run(sql: str, args: Sequence[Any]) -> sqlite3.Cursor:
            return con.execute(sql, tuple(args))

        try:
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield run
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise
        except sqlite3.Error as exc:
            kind = QuarantineError if isinstance(exc, sqlite3.IntegrityError) else \
                IndexUnavailable  # a duplicate row is no outage
            raise kind(f"quarantine index {self.path}: {exc}") from exc
        finally:
            con.close()
            if write:
                self._fix_owner()

    def _fix_owner(self) -> None:
        """Running as root: hand new database files to the directory's owner.

        Only regular files, never through a symlink: the directory's owner may put
        links there, and root following one would hand it any file (/etc/shadow)."""
        if os.geteuid() != 0:
            return
        try:
            st = os.stat(os.path.dirname(self.path) or ".")
        except OSError:
            return
        if st.st_uid == 0:
            return
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                fst = os.lstat(self.path + suffix)
                if stat.S_ISREG(fst.st_mode) and fst.st_uid != st.st_uid:
                    os.chown(self.path + suffix, st.st_uid, st.st_gid, follow_symlinks=False)


def _create_private(path: str) -> None:
    """Create an empty database file with :data:`DB_MODE` unless one exists (SQLite
    itself would create it world-readable, 0644 under the usual umask)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, DB_MODE)
    except FileExistsError:
        return
    os.close(fd)


def _lacking(con: sqlite3.Connection) -> list[tuple[str, str]]:
    """The columns of :data:`ADDED_COLUMNS` the quarantine table does not have."""
    have = {row[1] for row in con.execute("PRAGMA table_info(quarantine)")}
    return [(name, kind) for name, kind in ADDED_COLUMNS if name not in have]


def _rollback(con: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open (SQLite ends some by itself on errors)."""
    if con.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            con.execute("ROLLBACK")

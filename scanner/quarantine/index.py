"""The quarantine index: one row per held message, in SQLite or PostgreSQL.

Both back ends share this SQL. Release is a state machine on the row, moved only by
conditional UPDATEs, so two releasers (processes or hosts) can never both win:

    held --claim--> releasing --finish--> released
                        |--abort-------> held (delivery failed, nothing was sent)

A row left in ``releasing`` (the releaser died) is not released again without
``force``: the next hop may already have the message.

Columns added after the first release of the schema (:data:`ADDED_COLUMNS`) are added
to an older index with ``ALTER TABLE`` the first time a process that may write opens
it; a process that may only read (a web front end's database role, a user reading the
SQLite file) reads NULL for them.
"""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from scanner.dburl import is_postgresql, redact
from scanner.idn import fold_address
from scanner.quarantine.record import QuarantineError, QuarantineRecord

STALE_CLAIM = 86400.0  # expire may remove a row whose release broke off this long ago
BATCH = 1000  # rows per query when listing

COLUMNS = ("mail_id", "secret_id", "stored_at", "sender", "recipients", "category", "score",
           "symbols", "size", "subject", "message_id", "client_addr", "policy_bank",
           "relative_path", "host", "release_started", "released_by", "released_at",
           "released_to", "release_result", "held_for")
# (name, SQL type) of the columns an index created before them lacks
ADDED_COLUMNS = (("held_for", "TEXT"),)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS quarantine (
        mail_id TEXT PRIMARY KEY,
        secret_id TEXT NOT NULL,
        stored_at DOUBLE PRECISION NOT NULL,
        sender TEXT NOT NULL,
        recipients TEXT NOT NULL,
        category TEXT NOT NULL,
        score DOUBLE PRECISION,
        symbols TEXT NOT NULL,
        size BIGINT NOT NULL,
        subject TEXT NOT NULL,
        message_id TEXT NOT NULL,
        client_addr TEXT,
        policy_bank TEXT NOT NULL,
        relative_path TEXT NOT NULL,
        host TEXT NOT NULL,
        release_started DOUBLE PRECISION,
        release_token TEXT,
        released_by TEXT,
        released_at DOUBLE PRECISION,
        released_to TEXT NOT NULL DEFAULT '[]',
        release_result TEXT NOT NULL DEFAULT '[]',
        held_for TEXT)""",
    "CREATE INDEX IF NOT EXISTS quarantine_stored_at ON quarantine (stored_at)",
    "CREATE INDEX IF NOT EXISTS quarantine_category ON quarantine (category)",
    """CREATE TABLE IF NOT EXISTS quarantine_rcpt (
        mail_id TEXT NOT NULL,
        address TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS quarantine_rcpt_address ON quarantine_rcpt (address)",
    "CREATE INDEX IF NOT EXISTS quarantine_rcpt_mail_id ON quarantine_rcpt (mail_id)",
)

Run = Callable[[str, Sequence[Any]], Any]  # execute one statement, return the cursor
_MAIL_ID = COLUMNS.index("mail_id")
_STORED_AT = COLUMNS.index("stored_at")

_IDLE = "(release_started IS NULL OR released_at IS NOT NULL)"


class Index(ABC):
    """Shared SQL over a back end that supplies transactions (``?`` placeholders)."""

    #: where the index lives, for error messages
    location: str = ""
    #: columns of :data:`ADDED_COLUMNS` this index lacks and could not be given (read
    #: as NULL, left out when writing); set by the back end when it first connects
    missing: frozenset[str] = frozenset()

    @abstractmethod
    def _transaction(self, write: bool) -> AbstractContextManager[Run]:
        """A transaction; ``write`` asks for the write lock up front (SQLite)."""

    def _exists(self) -> bool:
        return True

    # -- writes --------------------------------------------------------------------------

    def _selected(self) -> str:
        """The SELECT list of :data:`COLUMNS`, NULL for the missing ones."""
        return ", ".join("NULL" if c in self.missing else c for c in COLUMNS)

    def insert(self, rec: QuarantineRecord) -> None:
        with self._transaction(write=True) as run:
            # (the first connection finds out which columns are missing)
            names = [c for c in COLUMNS if c not in self.missing]
            values = [_to_db(name, getattr(rec, name)) for name in names]
            marks = ", ".join("?" * len(names))
            run(f"INSERT INTO quarantine ({', '.join(names)}) VALUES ({marks})", values)
            for addr in dict.fromkeys(fold_address(a) for a in rec.recipients):
                run("INSERT INTO quarantine_rcpt (mail_id, address) VALUES (?, ?)",
                    [rec.mail_id, addr])

    def claim(self, mail_id: str, by: str, *, force: bool = False) -> str | None:
        """held -> releasing; the claim token, or None if the row is not ``held``."""
        token = uuid.uuid4().hex
        cond = "" if force else " AND released_at IS NULL AND release_started IS NULL"
        with self._transaction(write=True) as run:
            cur = run("UPDATE quarantine SET release_started = ?, release_token = ?, "
                      "released_by = ?, released_at = NULL, release_result = '[]' "
                      f"WHERE mail_id = ?{cond}",
                      [time.time(), token, by, mail_id])
            return token if cur.rowcount == 1 else None

    def finish(self, mail_id: str, token: str, to: list[str], result: list[str]) -> bool:
        """releasing -> released, recording who got it and the next hop's replies."""
        with self._transaction(write=True) as run:
            cur = run("UPDATE quarantine SET released_at = ?, released_to = ?, "
                      "release_result = ? WHERE mail_id = ? AND release_token = ?",
                      [time.time(), json.dumps(to), json.dumps(result), mail_id, token])
            return cur.rowcount == 1

    def abort(self, mail_id: str, token: str, result: list[str]) -> None:
        """releasing -> held: nothing was delivered; keep the replies for ``show``."""
        with self._transaction(write=True) as run:
            run("UPDATE quarantine SET release_started = NULL, release_token = NULL, "
                "release_result = ? WHERE mail_id = ? AND release_token = ?",
                [json.dumps(result), mail_id, token])

    def note(self, mail_id: str, token: str, result: list[str]) -> None:
        """Keep the replies of a release whose outcome is unknown (still ``releasing``)."""
        with self._transaction(write=True) as run:
            run("UPDATE quarantine SET release_result = ? WHERE mail_id = ? AND "
                "release_token = ?", [json.dumps(result), mail_id, token])

    def delete(self, mail_id: str, *, force: bool = False) -> bool:
        """Remove the row unless a release is under way (or ``force``)."""
        cond = "" if force else f" AND {_IDLE}"
        with self._transaction(write=True) as run:
            cur = run(f"DELETE FROM quarantine WHERE mail_id = ?{cond}", [mail_id])
            if cur.rowcount != 1:
                return False
            run("DELETE FROM quarantine_rcpt WHERE mail_id = ?", [mail_id])
            return True

    def delete_expired(self, mail_id: str, cutoff: float) -> bool:
        """Remove the row if stored before ``cutoff`` and no release is running."""
        stale = time.time() - STALE_CLAIM
        with self._transaction(write=True) as run:
            cur = run(f"DELETE FROM quarantine WHERE mail_id = ? AND stored_at < ? AND "
                      f"({_IDLE} OR release_started < ?)", [mail_id, cutoff, stale])
            if cur.rowcount != 1:
                return False
            run("DELETE FROM quarantine_rcpt WHERE mail_id = ?", [mail_id])
            return True

    # -- reads ---------------------------------------------------------------------------

    def get(self, mail_id: str) -> QuarantineRecord | None:
        if not self._exists():
            return None
        with self._transaction(write=False) as run:
            row = run(f"SELECT {self._selected()} FROM quarantine WHERE mail_id = ?",
                      [mail_id]).fetchone()
        return _from_db(row) if row else None

    def list(self, category: str | None = None, rcpt: str | None = None,
             since: float | None = None, before: float | None = None) -> list[QuarantineRecord]:
        return list(self.iter_rows(category, rcpt, since, before))

    def iter_rows(self, category: str | None = None, rcpt: str | None = None,
                  since: float | None = None, before: float | None = None
                  ) -> Iterator[QuarantineRecord]:
        """The matching rows, oldest first, fetched :data:`BATCH` at a time (each batch
        its own short transaction), so a quarantine of millions of messages is listed
        or expired in constant memory and without holding a snapshot open."""
        if not self._exists():
            return
        where, args = _filters(category, rcpt, since, before)
        after: tuple[float, str] | None = None
        while True:
            cond, values = list(where), list(args)
            if after is not None:
                cond.append("(stored_at > ? OR (stored_at = ? AND mail_id > ?))")
                values += [after[0], after[0], after[1]]
            with self._transaction(write=False) as run:
                rows = run(f"SELECT {self._selected()} FROM quarantine WHERE "
                           f"{' AND '.join(cond)} ORDER BY stored_at, mail_id LIMIT {BATCH}",
                           values).fetchall()
            for row in rows:
                yield _from_db(row)
            if len(rows) < BATCH:
                return
            after = (rows[-1][_STORED_AT], rows[-1][_MAIL_ID])

    def known(self, mail_ids: Sequence[str]) -> set[str]:
        """Which of these ids have a row (for finding files without one)."""
        found: set[str] = set()
        if not self._exists():
            return found
        with self._transaction(write=False) as run:
            for chunk in _chunks(list(mail_ids), 500):
                marks = ", ".join("?" * len(chunk))
                rows = run(f"SELECT mail_id FROM quarantine WHERE mail_id IN ({marks})",
                           chunk).fetchall()
                found.update(r[0] for r in rows)
        return found


def _filters(category: str | None, rcpt: str | None, since: float | None,
             before: float | None) -> tuple[list[str], list[Any]]:
    """WHERE conditions and their arguments for :meth:`Index.iter_rows`."""
    where: list[str] = ["1 = 1"]
    args: list[Any] = []
    if category:
        where.append("category = ?")
        args.append(category.upper())
    if rcpt:
        # as policy lookups compare addresses (A-label domain, ASCII-only case folding);
        # rows indexed before that kept the address lower-cased as written
        bare = rcpt.strip("<>")
        keys = list(dict.fromkeys([fold_address(bare), bare.lower()]))
        marks = ", ".join("?" * len(keys))
        where.append(f"mail_id IN (SELECT mail_id FROM quarantine_rcpt WHERE address IN "
                     f"({marks}))")
        args.extend(keys)
    if since is not None:
        where.append("stored_at >= ?")
        args.append(since)
    if before is not None:
        where.append("stored_at < ?")
        args.append(before)
    return where, args


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


_JSON = {"recipients", "symbols", "released_to", "release_result"}
_JSON_OR_NULL = {"held_for"}


def _to_db(name: str, value: Any) -> Any:
    if name in _JSON_OR_NULL and value is None:
        return None
    return json.dumps(list(value)) if name in _JSON | _JSON_OR_NULL else value


def _from_db(row: Sequence[Any]) -> QuarantineRecord:
    data = dict(zip(COLUMNS, row, strict=True))
    for name in _JSON:
        data[name] = json.loads(data[name] or "[]")
    for name in _JSON_OR_NULL:
        data[name] = _json_list(data[name])
    data["path"] = ""  # filled in by the store, which knows the directory
    return QuarantineRecord(**data)


def _json_list(text: str | None) -> list[str] | None:
    """A JSON list of strings, None for NULL or anything else (a damaged value reads
    as not known)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def open_index(spec: str, directory: str) -> Index:
    """``sqlite:`` / ``sqlite:/path`` / ``postgresql://...`` -> an :class:`Index`."""
    if spec == "sqlite:" or spec.startswith("sqlite:"):
        from scanner.quarantine.index_sqlite import SqliteIndex

        path = spec[len("sqlite:"):] or f"{directory.rstrip('/')}/index.sqlite"
        return SqliteIndex(path)
    if is_postgresql(spec):
        from scanner.quarantine.index_pg import PostgresIndex

        return PostgresIndex(spec)
    raise QuarantineError(f"quarantine.index = {redact(spec)!r}: use 'sqlite:', "
                          "'sqlite:/path/file' or 'postgresql://user@host/dbname'")

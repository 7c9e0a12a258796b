"""Per-recipient policy from an SQL table (SQLite or PostgreSQL), like amavis's SQL lookups.

Table (create it yourself; the filter only reads it):

    CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings TEXT NOT NULL,
                                 priority INTEGER NOT NULL DEFAULT 7);  -- optional
    INSERT INTO scanner_policy VALUES ('@example.com', '{"spam_destiny": "discard"}', 5);
    INSERT INTO scanner_policy VALUES ('boss@example.com', '{"spam_lover": true}', 8);

``pattern`` uses the same forms as ``[policy.recipients]``; ``settings`` is a JSON object
(text, or PostgreSQL json/jsonb) with any overridable ``[policy]`` key.

Rows merge field by field, as amavis's ``lookup_sql_field`` takes each field from the
first row of its ``ORDER BY users.priority DESC`` query where it is not NULL: the rows
matching a recipient are ordered by ``priority`` (highest first; the column is
optional) and then from the most specific pattern to the least, and each key comes
from the first row that sets it (not to JSON ``null``). A key no row sets keeps the
configuration's value (its recipient table, banks, ``[policy]``).

Every value is checked as the configuration file's (types, choices, levels, addresses,
archive paths: :func:`scanner.config.check_policy_table`). A key that does not pass, or
that no ``[policy]`` table has, is logged naming the row and the key and counts as not
set (the next row's value applies); a row whose settings are not a JSON object (NULL,
empty, not JSON) is logged and ignored.

A lookup that fails (database missing, unreadable, locked past ``policy.sql_timeout``,
PostgreSQL down or slower than that) raises :class:`SqlLookupError`: the message is
deferred (451), as amavis tempfails it, never delivered with the configuration's policy
alone. Results are cached per worker for ``ttl`` seconds (a changed row applies within
that time, or at once after SIGHUP). With PostgreSQL each worker keeps one connection
(:mod:`scanner.policy.kept`: opened anew when the server dropped it, and after SIGHUP);
a SQLite file is opened for each lookup. Passwords in the URL never reach a log line or an
error message (:func:`scanner.dburl.redact`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import quote

from scanner.config import Config, check_recipient_pattern
from scanner.config.policy import PolicyOverride
from scanner.config.schema import build
from scanner.dburl import redact
from scanner.errors import ConfigError
from scanner.pgsql import connect_bounded
from scanner.policy.kept import KeptConnection
from scanner.policy.sources import TTL, CachedSource, PolicyLookupError, check_setting, first_set

log = logging.getLogger("scanner.policy")
TABLE = "scanner_policy"
SOURCE = "policy SQL table"
SQLITE_CHUNK = 900
"""Keys per SQLite query (older SQLite allows 999 parameters)."""
SQLITE_STEPS = 10000
"""SQLite virtual machine steps between two looks at the clock (well under 1 ms)."""
NO_PRIORITY = -math.inf
"""The place of a row without a usable ``priority``: after every row that has one."""


class SqlLookupError(PolicyLookupError):
    """The policy database could not be read: the message must be deferred."""


class Row(NamedTuple):
    """One row of the table: its pattern, settings and priority (None: no column)."""

    pattern: Any
    settings: Any
    priority: Any = None


class SqlPolicy(CachedSource):
    """Looks up PolicyOverride rows by recipient address."""

    what = "policy SQL"
    entries = "rows"
    error = SqlLookupError

    def __init__(self, url: str, config: Config, ttl: float = TTL) -> None:
        if not (url.startswith("sqlite:") or url.startswith(("postgresql:", "postgres:"))):
            raise ConfigError(f"policy.sql_lookup = {redact(url)!r}: use sqlite:/path or "
                              "postgresql://")
        super().__init__(ttl)
        self._url = url
        self._config = config
        self._timeout = config.policy.sql_timeout
        # PostgreSQL: one connection per worker (a SQLite file is opened per lookup, so
        # that a file replaced with mv is read at the next one)
        self._kept = KeptConnection(self._pg_connect, _pg_close, "policy SQL",
                                    self._timeout * 3, _pg_lost)

    def close(self) -> None:
        """Close the kept PostgreSQL connection."""
        self._kept.close()

    def reload(self) -> None:
        """SIGHUP: forget the cached settings and, at the next lookup, the connection."""
        super().reload()
        self._kept.renew()

    @property
    def location(self) -> str:
        """The database URL without its password, for log lines and messages."""
        return redact(self._url)

    def _fetch(self, wanted: list[tuple[str, list[str]]]) -> dict[str, Row]:
        return self._rows(list(dict.fromkeys(k for _, keys in wanted for k in keys)))

    def _resolve(self, fetched: dict[str, Row],
                 wanted: list[tuple[str, list[str]]]) -> dict[str, Any]:
        values = self._checked(fetched)
        return {address: self._merged(keys, fetched, values) for address, keys in wanted}

    def _merged(self, keys: list[str], rows: Mapping[str, Row],
                values: Mapping[str, dict[str, Any] | None]) -> Any:
        """The rows of ``keys`` merged key by key (amavis's lookup_sql_field): each
        from the first row, by priority and then by ``keys``' order, that sets it; None
        when no row is a JSON object. ``values``: each row's checked keys."""
        ranked = sorted((-_priority(rows[k].priority), i) for i, k in enumerate(keys)
                        if k in rows and values[k] is not None)
        if not ranked:
            return None
        merged = first_set(values[keys[i]] or {} for _, i in ranked)
        first = rows[keys[ranked[0][1]]].pattern
        return build(PolicyOverride, merged, f"{TABLE}[{first}]", SOURCE)

    def _checked(self, rows: Mapping[str, Row]) -> dict[str, dict[str, Any] | None]:
        """:meth:`row_values` of each row, its problems logged (once per query, however
        many recipients the row matches)."""
        checked = {}
        for key, row in rows.items():
            checked[key], problems = self.row_values(row.pattern, row.settings)
            for problem in problems:
                log.error("%s", problem)
        return checked

    def _rows(self, keys: list[str]) -> dict[str, Row]:
        """Rows by lower-cased pattern; of patterns equal but for case, the first in
        the database's order of ``pattern`` (logged)."""
        rows, problems = _by_pattern(self._query(keys))
        for problem in problems:
            log.error("%s", problem)
        return rows

    def row_values(self, pattern: str, settings: Any) -> tuple[dict[str, Any] | None,
                                                              list[str]]:
        """The row's keys that pass the configuration file's checks (None: settings are
        no JSON object), and what was wrong with the row."""
        data = settings
        if isinstance(settings, str | bytes):
            try:
                data = json.loads(settings)
            except ValueError as exc:
                return None, [f"policy SQL row {pattern!r} ignored: settings is not JSON "
                              f"({exc})"]
        if not isinstance(data, Mapping):
            what = "NULL" if settings is None else f"{type(data).__name__} {data!r}"
            return None, [f"policy SQL row {pattern!r} ignored: settings must be a JSON "
                          f"object, got {what}"]
        problems: list[str] = []
        good = {}
        for key, value in data.items():
            problem = self._check_key(pattern, key, value)
            if problem:
                problems.append(problem)
            else:
                good[key] = value
        return good, problems

    def _check_key(self, pattern: str, key: str, value: Any) -> str:
        """What is wrong with one key of a row by the configuration file's checks; ''."""
        problem = check_setting(self._config, SOURCE, f"{TABLE}[{pattern}]", key, value)
        return f"policy SQL row {pattern!r}: key {key!r} ignored: {problem}" if problem else ""

    def probe(self) -> None:
        """Read the table once (``scanner serve`` at start); raises SqlLookupError."""
        try:
            self._query(["@."])
        except Exception as exc:
            raise SqlLookupError(f"policy SQL table cannot be read ({self.location}): "
                                 f"{exc}") from exc
        finally:
            self.close()

    def audit(self) -> list[str]:
        """Every problem of every row (``scanner config check``); raises SqlLookupError
        when the table cannot be read."""
        try:
            rows = self._query(None)
        except Exception as exc:
            raise SqlLookupError(f"policy SQL table cannot be read ({self.location}): "
                                 f"{exc}") from exc
        finally:
            self.close()
        _, problems = _by_pattern(rows)
        for row in rows:
            if row.pattern is None:
                problems.append("policy SQL row with a NULL pattern never matches")
                continue
            try:
                check_recipient_pattern(SOURCE, f"{TABLE}[{row.pattern}]", str(row.pattern))
            except ConfigError as exc:
                problems.append(f"policy SQL row {row.pattern!r}: {exc}")
            if row.priority is not None and _priority(row.priority) == NO_PRIORITY:
                problems.append(f"policy SQL row {row.pattern!r}: priority {row.priority!r} "
                                "is not a number; the row comes after every row that has one")
            problems += self.row_values(str(row.pattern), row.settings)[1]
        return problems

    def _query(self, keys: list[str] | None) -> list[Row]:
        """The rows whose lower-cased pattern is one of ``keys`` (None: every row), in
        the order of ``pattern``; ``priority`` where the table has that column."""
        if self._url.startswith("sqlite:"):
            return sorted(self._sqlite(keys), key=lambda r: str(r.pattern))

        def select(db: Any) -> list[Row]:
            if keys is None:
                cur = db.execute(f"SELECT * FROM {TABLE} ORDER BY pattern")
            else:
                cur = db.execute(f"SELECT * FROM {TABLE} "
                                 "WHERE lower(pattern) = ANY(%s) ORDER BY pattern", (keys,))
            return _named(cur.description, cur.fetchall())

        return self._kept.run(select)

    def _pg_connect(self) -> Any:
        """A PostgreSQL connection bounded by ``sql_timeout`` (connect, statements, and
        over TCP unacknowledged data: :func:`scanner.pgsql.connect_bounded`, as the pen
        pals memory's); in autocommit, so that it holds no transaction while idle."""
        import psycopg  # optional dependency: pip install 'scanner[postgresql]'

        return connect_bounded(psycopg, self._url, self._timeout, autocommit=True)

    def _sqlite(self, keys: list[str] | None) -> list[Row]:
        """:meth:`_query` of SQLite: waits for a lock and runs its statements within
        ``sql_timeout`` in all (then sqlite3 raises 'interrupted'), as PostgreSQL's
        connect_timeout and statement_timeout bound its lookups."""
        deadline = time.monotonic() + self._timeout
        path = self._url[len("sqlite:"):]
        db = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=self._timeout)
        db.set_progress_handler(lambda: time.monotonic() > deadline, SQLITE_STEPS)
        try:
            if keys is None:
                cur = db.execute(f"SELECT * FROM {TABLE}")
                return _named(cur.description, cur.fetchall())
            rows = []
            for i in range(0, len(keys), SQLITE_CHUNK):
                chunk = keys[i:i + SQLITE_CHUNK]
                cur = db.execute(f"SELECT * FROM {TABLE} WHERE "
                                 f"lower(pattern) IN ({','.join('?' * len(chunk))})", chunk)
                rows += _named(cur.description, cur.fetchall())
            return rows
        finally:
            db.close()


def _pg_close(db: Any) -> None:
    with contextlib.suppress(Exception):  # a connection the server already dropped
        db.close()


def _pg_lost(db: Any, exc: BaseException) -> bool:
    """Whether a failed statement lost the connection itself (the server restarted or
    ended an idle session), rather than failing on its own (statement timeout)."""
    return bool(db.closed or db.broken)


def _named(description: Any, records: list[tuple[Any, ...]]) -> list[Row]:
    """The rows of a ``SELECT *`` by their column names (``priority`` is optional; a
    table without ``pattern`` or ``settings`` raises)."""
    names = [str(d[0]).lower() for d in description]
    for needed in ("pattern", "settings"):
        if needed not in names:
            raise LookupError(f"table {TABLE} has no column {needed!r}")
    at = {name: names.index(name) for name in ("pattern", "settings", "priority")
          if name in names}
    prio = at.get("priority")
    return [Row(r[at["pattern"]], r[at["settings"]], None if prio is None else r[prio])
            for r in records]


def _priority(value: Any) -> float:
    """A row's priority as a number; :data:`NO_PRIORITY` for none or not a number."""
    if value is None or isinstance(value, bool):
        return NO_PRIORITY
    try:
        number = float(value)
    except (TypeError, ValueError):
        return NO_PRIORITY
    return NO_PRIORITY if math.isnan(number) else number


def _by_pattern(rows: list[Row]) -> tuple[dict[str, Row], list[str]]:
    """Rows by lower-cased pattern, the first of patterns equal but for case; and a
    problem for each of the others."""
    found: dict[str, Row] = {}
    first: dict[str, str] = {}
    problems = []
    for row in rows:
        if row.pattern is None:
            continue
        lowered = str(row.pattern).lower()
        if lowered in found:
            problems.append(f"policy SQL rows {first[lowered]!r} and {row.pattern!r} differ "
                            f"only in case; {row.pattern!r} ignored")
            continue
        found[lowered], first[lowered] = row, str(row.pattern)
    return found, problems

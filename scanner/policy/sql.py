"""Per-recipient policy from an SQL table (SQLite or PostgreSQL), like amavis's SQL lookups.

Table (create it yourself; the filter only reads it):

    CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings TEXT NOT NULL);
    INSERT INTO scanner_policy VALUES ('@example.com', '{"spam_destiny": "discard"}');
    INSERT INTO scanner_policy VALUES ('boss@example.com', '{"spam_lover": true}');

``pattern`` uses the same forms as ``[policy.recipients]``; ``settings`` is a JSON object
(text, or PostgreSQL json/jsonb) with any overridable ``[policy]`` key. The most specific
row wins and applies on top of the configuration's own tables.

Every value is checked as the configuration file's (types, choices, levels, addresses,
archive paths: :func:`scanner.config.check_policy_table`). A key that does not pass, or
that no ``[policy]`` table has, is logged naming the row and the key and left out (the
configuration's value applies); a row whose settings are not a JSON object (NULL, empty,
not JSON) is logged and ignored, so the next less specific row applies.

A lookup that fails (database missing, unreadable, locked past its busy timeout,
PostgreSQL down) raises :class:`SqlLookupError`: the message is deferred (451), as amavis
tempfails it, never delivered with the configuration's policy alone. Results are cached
per worker for ``ttl`` seconds (a changed row applies within that time, or at once
after SIGHUP).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from scanner.config import Config, check_policy_table, check_recipient_pattern
from scanner.config.policy import PolicyOverride
from scanner.config.schema import build
from scanner.errors import ConfigError
from scanner.policy.lookup import candidates

log = logging.getLogger("scanner.policy")
TABLE = "scanner_policy"
SOURCE = "policy SQL table"
TIMEOUT = 5.0
"""Seconds a lookup waits for SQLite's lock or PostgreSQL's connection and statement."""
TTL = 60.0
"""Seconds a worker keeps a recipient's row before reading it again."""
SQLITE_CHUNK = 900
"""Keys per SQLite query (older SQLite allows 999 parameters)."""


class SqlLookupError(Exception):
    """The policy database could not be read: the message must be deferred."""


class SqlPolicy:
    """Looks up PolicyOverride rows by recipient address."""

    name = "policy SQL lookup"  # reload_checks names it in its log line

    def __init__(self, url: str, config: Config, ttl: float = TTL) -> None:
        if not (url.startswith("sqlite:") or url.startswith(("postgresql:", "postgres:"))):
            raise ConfigError(f"policy.sql_lookup = {url!r}: use sqlite:/path or postgresql://")
        self._url = url
        self._config = config
        self._ttl = ttl
        self._cache: dict[tuple[str, str, bool], tuple[float, Any]] = {}
        self._generation = 0

    def reload(self) -> None:
        """SIGHUP (scanner.serve.reload): forget the cached rows, so changed ones apply
        to the next message."""
        self._generation += 1  # a lookup running now does not cache what it read before
        self._cache.clear()
        log.info("SIGHUP: policy SQL rows are read anew")

    def override_for(self, address: str, delimiter: str = "+", local: bool = True) -> Any:
        """The most specific valid PolicyOverride for ``address``, or None; raises
        SqlLookupError when the database cannot be read. ``user@`` rows apply to
        ``local`` addresses only (policy.local_domains), as amavis's bare user names."""
        return self.overrides_for([(address, local)], delimiter)[address]

    def overrides_for(self, wanted: Sequence[tuple[str, bool]],
                      delimiter: str = "+") -> dict[str, Any]:
        """:meth:`override_for` of each (address, local); the addresses not cached are
        read with one query (a message to 500 recipients: one connection, not 500)."""
        now, generation = time.monotonic(), self._generation
        found: dict[str, Any] = {}
        missing: list[tuple[tuple[str, str, bool], str, list[str]]] = []
        for address, local in wanted:
            key = (address.lower(), delimiter, local)
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                found[address] = hit[1]
            else:
                missing.append((key, address, candidates(address, delimiter, local)))
        if not missing:
            return found
        try:
            rows = self._rows(list(dict.fromkeys(k for *_, keys in missing for k in keys)))
        except Exception as exc:
            names = ", ".join(f"<{address}>" for _, address, _ in missing)
            log.error("policy SQL lookup for %s failed (%s): %s; the message is deferred",
                      names, self._url.split("@")[-1], exc)
            raise SqlLookupError(f"policy SQL lookup failed: {exc}") from exc
        if len(self._cache) > 10000:
            self._cache.clear()
        for key, address, keys in missing:
            found[address] = self._most_specific(keys, rows)
            if generation == self._generation:
                self._cache[key] = (now, found[address])
        return found

    def _most_specific(self, keys: list[str], rows: Mapping[str, Any]) -> Any:
        """The override of the first of ``keys`` with a row that is a JSON object."""
        for k in keys:
            if k in rows:
                result = self._parse(k, rows[k])
                if result is not None:
                    return result
        return None

    def _rows(self, keys: list[str]) -> dict[str, Any]:
        """settings by lower-cased pattern; of patterns equal but for case, the first in
        the database's order of ``pattern`` (logged)."""
        rows, problems = _by_pattern(self._query(keys))
        for problem in problems:
            log.error("%s", problem)
        return rows

    def _parse(self, pattern: str, settings: Any) -> Any:
        """The row's PolicyOverride, its bad keys left out (logged); None for a row that
        is not a JSON object."""
        override, problems = self.check_row(pattern, settings)
        for problem in problems:
            log.error("%s", problem)
        return override

    def check_row(self, pattern: str, settings: Any) -> tuple[Any, list[str]]:
        """The row's PolicyOverride of the keys that pass the configuration file's checks
        (None: settings are no JSON object), and what was wrong with the row."""
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
        return build(PolicyOverride, good, f"{TABLE}[{pattern}]", SOURCE), problems

    def _check_key(self, pattern: str, key: str, value: Any) -> str:
        """What is wrong with one key of a row by the configuration file's checks; ''."""
        where = f"{TABLE}[{pattern}]"
        try:
            one = build(PolicyOverride, {key: value}, where, SOURCE)
            check_policy_table(self._config, SOURCE, where, one)
        except ConfigError as exc:
            return f"policy SQL row {pattern!r}: key {key!r} ignored: {exc}"
        return ""

    def probe(self) -> None:
        """Read the table once (``scanner serve`` at start); raises SqlLookupError."""
        try:
            self._query(["@."])
        except Exception as exc:
            raise SqlLookupError(f"policy SQL table cannot be read: {exc}") from exc

    def audit(self) -> list[str]:
        """Every problem of every row (``scanner config check``); raises SqlLookupError
        when the table cannot be read."""
        try:
            rows = self._query(None)
        except Exception as exc:
            raise SqlLookupError(f"policy SQL table cannot be read: {exc}") from exc
        _, problems = _by_pattern(rows)
        for pattern, settings in rows:
            if pattern is None:
                problems.append("policy SQL row with a NULL pattern never matches")
                continue
            try:
                check_recipient_pattern(SOURCE, f"{TABLE}[{pattern}]", str(pattern))
            except ConfigError as exc:
                problems.append(f"policy SQL row {pattern!r}: {exc}")
            problems += self.check_row(str(pattern), settings)[1]
        return problems

    def _query(self, keys: list[str] | None) -> list[tuple[Any, Any]]:
        """The rows whose lower-cased pattern is one of ``keys`` (None: every row)."""
        if self._url.startswith("sqlite:"):
            path = self._url[len("sqlite:"):]
            db = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=TIMEOUT)
            try:
                if keys is None:
                    return db.execute(f"SELECT pattern, settings FROM {TABLE} "
                                      "ORDER BY pattern").fetchall()
                rows = []
                for i in range(0, len(keys), SQLITE_CHUNK):
                    chunk = keys[i:i + SQLITE_CHUNK]
                    rows += db.execute(f"SELECT pattern, settings FROM {TABLE} WHERE "
                                       f"lower(pattern) IN ({','.join('?' * len(chunk))})",
                                       chunk).fetchall()
                return sorted(rows, key=lambda r: str(r[0]))  # as ORDER BY pattern
            finally:
                db.close()
        import psycopg  # optional dependency: pip install 'scanner[postgresql]'

        ms = int(TIMEOUT * 1000)
        with psycopg.connect(self._url, connect_timeout=int(TIMEOUT),
                             options=f"-c statement_timeout={ms}") as db:
            if keys is None:
                cur = db.execute(f"SELECT pattern, settings FROM {TABLE} ORDER BY pattern")
            else:
                cur = db.execute(f"SELECT pattern, settings FROM {TABLE} "
                                 "WHERE lower(pattern) = ANY(%s) ORDER BY pattern", (keys,))
            return list(cur.fetchall())


def _by_pattern(rows: list[tuple[Any, Any]]) -> tuple[dict[str, Any], list[str]]:
    """settings by lower-cased pattern, the first of patterns equal but for case; and a
    problem for each of the others."""
    found: dict[str, Any] = {}
    first: dict[str, str] = {}
    problems = []
    for original, settings in rows:
        if original is None:
            continue
        lowered = str(original).lower()
        if lowered in found:
            problems.append(f"policy SQL rows {first[lowered]!r} and {original!r} differ "
                            f"only in case; {original!r} ignored")
            continue
        found[lowered], first[lowered] = settings, str(original)
    return found, problems

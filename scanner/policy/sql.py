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
per worker for ``ttl`` seconds (a changed row applies within that time).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from scanner.config import Config, check_policy_table
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


class SqlLookupError(Exception):
    """The policy database could not be read: the message must be deferred."""


class SqlPolicy:
    """Looks up PolicyOverride rows by recipient address."""

    def __init__(self, url: str, config: Config, ttl: float = TTL) -> None:
        if not (url.startswith("sqlite:") or url.startswith(("postgresql:", "postgres:"))):
            raise ConfigError(f"policy.sql_lookup = {url!r}: use sqlite:/path or postgresql://")
        self._url = url
        self._config = config
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    def override_for(self, address: str, delimiter: str = "+") -> Any:
        """The most specific valid PolicyOverride for ``address``, or None; raises
        SqlLookupError when the database cannot be read."""
        key = (address.lower(), delimiter)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        keys = candidates(address, delimiter)
        try:
            rows = self._rows(keys)
        except Exception as exc:
            where = self._url.split("@")[-1]
            log.error("policy SQL lookup for <%s> failed (%s): %s; the message is deferred",
                      address, where, exc)
            raise SqlLookupError(f"policy SQL lookup failed: {exc}") from exc
        result = None
        for k in keys:
            if k in rows:
                result = self._parse(k, rows[k])
                if result is not None:
                    break
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[key] = (now, result)
        return result

    def _rows(self, keys: list[str]) -> dict[str, Any]:
        """settings by lower-cased pattern; of patterns equal but for case, the first in
        the database's order of ``pattern`` (logged)."""
        rows: dict[str, Any] = {}
        first: dict[str, str] = {}
        for original, settings in self._query(keys):
            lowered = str(original).lower()
            if lowered in rows:
                log.error("policy SQL rows %r and %r differ only in case; %r ignored",
                          first[lowered], original, original)
                continue
            rows[lowered], first[lowered] = settings, original
        return rows

    def _parse(self, pattern: str, settings: Any) -> Any:
        """The row's PolicyOverride, its bad keys left out; None for a row that is not a
        JSON object."""
        data = settings
        if isinstance(settings, str | bytes):
            try:
                data = json.loads(settings)
            except ValueError as exc:
                log.error("policy SQL row %r ignored: settings is not JSON (%s)", pattern, exc)
                return None
        if not isinstance(data, Mapping):
            what = "NULL" if settings is None else f"{type(data).__name__} {data!r}"
            log.error("policy SQL row %r ignored: settings must be a JSON object, got %s",
                      pattern, what)
            return None
        good = {k: v for k, v in data.items() if self._valid(pattern, k, v)}
        return build(PolicyOverride, good, f"{TABLE}[{pattern}]", SOURCE)

    def _valid(self, pattern: str, key: str, value: Any) -> bool:
        """The configuration file's checks on one key of a row; a failure is logged."""
        where = f"{TABLE}[{pattern}]"
        try:
            one = build(PolicyOverride, {key: value}, where, SOURCE)
            check_policy_table(self._config, SOURCE, where, one)
        except ConfigError as exc:
            log.error("policy SQL row %r: key %r ignored: %s", pattern, key, exc)
            return False
        return True

    def _query(self, keys: list[str]) -> list[tuple[str, Any]]:
        if self._url.startswith("sqlite:"):
            path = self._url[len("sqlite:"):]
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=TIMEOUT)
            try:
                marks = ",".join("?" * len(keys))
                return db.execute(f"SELECT pattern, settings FROM {TABLE} "
                                  f"WHERE lower(pattern) IN ({marks}) ORDER BY pattern",
                                  keys).fetchall()
            finally:
                db.close()
        import psycopg  # optional dependency: pip install 'scanner[postgresql]'

        ms = int(TIMEOUT * 1000)
        with psycopg.connect(self._url, connect_timeout=int(TIMEOUT),
                             options=f"-c statement_timeout={ms}") as db:
            cur = db.execute(f"SELECT pattern, settings FROM {TABLE} "
                             "WHERE lower(pattern) = ANY(%s) ORDER BY pattern", (keys,))
            return list(cur.fetchall())

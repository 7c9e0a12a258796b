"""Per-recipient policy from an SQL table (SQLite or PostgreSQL), like amavis's SQL lookups.

Table (create it yourself; the filter only reads it):

    CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings TEXT NOT NULL);
    INSERT INTO scanner_policy VALUES ('@example.com', '{"spam_destiny": "discard"}');
    INSERT INTO scanner_policy VALUES ('boss@example.com', '{"spam_lover": true}');

``pattern`` uses the same forms as ``[policy.recipients]``; ``settings`` is a JSON object
with any overridable ``[policy]`` key. The most specific row wins and applies on top of
the configuration's own tables. A row that does not validate is logged and ignored; an
unreachable database is logged and the configuration alone decides (mail keeps flowing).
Results are cached per worker for ``ttl`` seconds.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

from scanner.config.policy import PolicyOverride
from scanner.config.schema import build
from scanner.errors import ConfigError
from scanner.policy.lookup import candidates

log = logging.getLogger("scanner.policy")
TABLE = "scanner_policy"


class SqlPolicy:
    """Looks up PolicyOverride rows by recipient address."""

    def __init__(self, url: str, ttl: float = 60.0, delimiter: str = "+") -> None:
        if not (url.startswith("sqlite:") or url.startswith(("postgresql:", "postgres:"))):
            raise ConfigError(f"policy.sql_lookup = {url!r}: use sqlite:/path or postgresql://")
        self._url = url
        self._ttl = ttl
        self._delimiter = delimiter
        self._cache: dict[str, tuple[float, Any]] = {}

    def override_for(self, address: str) -> Any:
        """The most specific valid PolicyOverride for ``address``, or None."""
        key = address.lower()
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        keys = candidates(address, self._delimiter)
        try:
            rows = dict(self._query(keys))
        except Exception as exc:
            log.error("policy SQL lookup failed (%s): %s; using the configuration only",
                      self._url.split("@")[-1], exc)
            return None
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

    def _parse(self, pattern: str, text: str) -> Any:
        try:
            data = json.loads(text)
            return build(PolicyOverride, data, f"{TABLE}[{pattern}]", "policy SQL table")
        except (ValueError, ConfigError) as exc:
            log.error("policy SQL row %r ignored: %s", pattern, exc)
            return None

    def _query(self, keys: list[str]) -> list[tuple[str, str]]:
        if self._url.startswith("sqlite:"):
            path = self._url[len("sqlite:"):]
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                marks = ",".join("?" * len(keys))
                return db.execute(f"SELECT lower(pattern), settings FROM {TABLE} "
                                  f"WHERE lower(pattern) IN ({marks})", keys).fetchall()
        import psycopg  # optional dependency: pip install 'scanner[postgresql]'

        with psycopg.connect(self._url, connect_timeout=5) as db:
            cur = db.execute(f"SELECT lower(pattern), settings FROM {TABLE} "
                             "WHERE lower(pattern) = ANY(%s)", (keys,))
            return list(cur.fetchall())

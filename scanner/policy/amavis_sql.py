"""Per-recipient policy from amavis's own SQL lookup tables (``@lookup_sql_dsn``).

Web front ends (Modoboa, iRedAdmin, PostfixAdmin's amavis plugins) edit amavis's
``users`` and ``policy`` tables (README.sql-pg of amavisd-new): a users row per
address, domain (``@example.com``) or catch-all (``@.``), each pointing at a policy row
of spam levels, lovers, bypass flags and the like. With ``policy.sql_lookup_tables =
"amavis"`` those tables are read as amavis reads them with its default
``$sql_select_policy``: the users rows whose ``email`` is one of the recipient's lookup
keys (:func:`scanner.policy.lookup.candidates`), ordered by ``users.priority``
(highest first) and then from the most specific key to the least, each setting taken
from the first row whose policy has it (not NULL). The policy columns become the
``[policy]`` keys of :data:`COLUMNS`; those scanner has no per-recipient equivalent for
(:data:`IGNORED`) are logged once per worker. A recipient matching a users row is
local unless the row's optional ``local`` column says N (the ``@.`` catch-all only when
it says Y), as amavis counts users rows.

The per-recipient white and black lists (``wblist`` joined with ``mailaddr``, amavis's
``$sql_select_white_black_list``), where those tables exist, become each users row's
``allow_senders`` (wb W or Y), ``block_senders`` (B or N) and ``sender_scores`` (a
number: amavis's soft listing), matched against the envelope sender and From as
amavis matches them. A recipient's lists are those of all his rows, and an allowed
sender wins over a blocked one (amavis asks his rows in turn and the first that lists
the sender decides: a sender his own row blocks and his domain's row allows is
blocked there, allowed here).

PostgreSQL (psycopg), MySQL/MariaDB (PyMySQL) and SQLite are read; ``users.email`` may
be binary (amavis 2.6 and later) or text. Failures and caching are the policy SQL
table's (:mod:`scanner.policy.sql`): a lookup that fails defers the message (451).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from scanner.config import Config
from scanner.config.policy import PolicyOverride
from scanner.config.schema import build
from scanner.dburl import is_postgresql, redact
from scanner.policy.kept import KeptConnection
from scanner.policy.ldap import ATTRIBUTES
from scanner.policy.ldap import _local as local_by_rank
from scanner.policy.sources import (
    TTL,
    CachedSource,
    PolicyLookupError,
    check_setting,
    first_set,
    number_value,
)

log = logging.getLogger("scanner.policy")
SOURCE = "amavis policy SQL"

def _column(attribute: str) -> str:
    """``amavisSpamTag2Level`` -> ``spam_tag2_level``: amavis's LDAP schema names its
    attributes after the policy table's columns."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", attribute.removeprefix("amavis")).lower()


COLUMNS: dict[str, tuple[str, str]] = {
    _column(name): setting for name, setting in ATTRIBUTES.items()
    if setting[1] != "list" and name != "amavisLocal"}
"""amavis policy column -> (the [policy] key it sets, how its value is read): the LDAP
attributes' (:data:`scanner.policy.ldap.ATTRIBUTES`) but the sender lists, which are
the wblist table here, and ``local``, a users column."""

IGNORED = (
    "spam_tag3_level", "spam_subject_tag3", "spam_modifies_subj", "virus_quarantine_to",
    "spam_quarantine_to", "banned_quarantine_to", "unchecked_quarantine_to",
    "bad_header_quarantine_to", "clean_quarantine_to", "warnvirusrecip",
    "warnbannedrecip", "warnbadhrecip", "newvirus_admin", "virus_admin", "banned_admin",
    "bad_header_admin", "spam_admin", "banned_rulenames", "disclaimer_options",
    "forward_method", "sa_userconf", "sa_username",
)
"""amavis policy columns scanner has no per-recipient equivalent for."""
SENDER_LISTS = ("allow_senders", "block_senders", "sender_scores")
"""What a users row's wblist entries become."""
_logged_ignored: set[str] = set()


class AmavisSqlLookupError(PolicyLookupError):
    """amavis's lookup tables could not be read: the message must be deferred."""


class AmavisSqlPolicy(CachedSource):
    """Looks up PolicyOverride settings in amavis's users and policy tables."""

    what = "policy SQL"
    entries = "users rows"
    error = AmavisSqlLookupError
    readable = "amavis's policy tables"

    def __init__(self, url: str, config: Config, ttl: float = TTL) -> None:
        super().__init__(ttl)
        self._url = url
        self._config = config
        self._timeout = config.policy.sql_timeout
        self._binary_email: bool | None = None  # users.email's type, read once
        self._wblist: bool | None = None  # whether wblist and mailaddr exist
        self._kept = KeptConnection(self._connect, _close, "policy SQL", self._timeout * 3,
                                    lambda db, exc: True)

    @property
    def location(self) -> str:
        return redact(self._url)

    def close(self) -> None:
        self._kept.close()

    def reload(self) -> None:
        super().reload()
        self._kept.renew()
        self._binary_email = self._wblist = None

    # -- reading -------------------------------------------------------------------------

    def _fetch(self, wanted: list[tuple[str, list[str]]]) -> dict[str, list[dict[str, Any]]]:
        keys = list(dict.fromkeys(_amavis_key(k) for _, ks in wanted for k in ks))
        if self._url.startswith("sqlite:"):
            return self._select(self._sqlite_rows, keys)
        return self._kept.run(lambda db: self._select(
            lambda sql, params: _rows(db, sql.replace("?", "%s"), params), keys))

    def _select(self, rows: Any, keys: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The users rows of ``keys`` (by lower-cased email) with their policy's
        columns, each a dict of lower-case column names."""
        if self._binary_email is None:
            self._binary_email = self._email_is_binary(rows)
            self._wblist = self._has_wblist(rows)
        params = [k.encode() for k in keys] if self._binary_email else keys
        users = rows(f"SELECT * FROM users WHERE email IN ({', '.join('?' * len(keys))})",
                     params) if keys else []
        ids = sorted({u["policy_id"] for u in users if u.get("policy_id") is not None})
        policies = {p["id"]: p for p in rows(
            f"SELECT * FROM policy WHERE id IN ({', '.join('?' * len(ids))})", ids)} \
            if ids else {}
        senders = self._senders(rows, [u["id"] for u in users if u.get("id") is not None])
        found: dict[str, list[dict[str, Any]]] = {}
        for user in users:
            email = _text(user.get("email"))
            merged = {**policies.get(user.get("policy_id"), {}),
                      **senders.get(user.get("id"), {}),
                      "priority": user.get("priority"), "local": user.get("local"),
                      "email": email}
            found.setdefault(email.lower(), []).append(merged)
        return found

    def _senders(self, rows: Any, ids: list[Any]) -> dict[Any, dict[str, Any]]:
        """Each users row's wblist entries (amavis's per-recipient white and black
        lists) as allow_senders (W, Y), block_senders (B, N) and sender_scores (a
        number: soft points); by users id."""
        if not self._wblist or not ids:
            return {}
        found = rows("SELECT wblist.rid AS rid, wblist.wb AS wb, mailaddr.email AS email "
                     "FROM wblist JOIN mailaddr ON wblist.sid = mailaddr.id WHERE "
                     f"wblist.rid IN ({', '.join('?' * len(ids))}) ORDER BY "
                     "mailaddr.priority DESC, mailaddr.email", ids)
        out: dict[Any, dict[str, Any]] = {}
        for row in found:
            entry = out.setdefault(row["rid"], {"allow_senders": [], "block_senders": [],
                                                "sender_scores": {}})
            sender, wb = _text(row["email"]), _text(row["wb"]).strip()
            if wb.upper() in ("W", "Y"):
                entry["allow_senders"].append(sender)
            elif wb.upper() in ("B", "N"):
                entry["block_senders"].append(sender)
            elif wb:
                try:
                    entry["sender_scores"][sender] = float(wb)
                except ValueError:
                    log.error("amavis wblist entry %r for users id %s: wb %r is not W, B "
                              "or a number; ignored", sender, row["rid"], wb)
        return {rid: {k: v for k, v in entry.items() if v} for rid, entry in out.items()}

    def _has_wblist(self, rows: Any) -> bool:
        try:
            rows("SELECT wblist.rid FROM wblist JOIN mailaddr ON wblist.sid = mailaddr.id "
                 "WHERE 1 = 0", [])
        except Exception:
            log.info("amavis policy SQL: no wblist and mailaddr tables (%s); no "
                     "per-recipient sender lists", self.location)
            return False
        return True

    def _email_is_binary(self, rows: Any) -> bool:
        if self._url.startswith("sqlite:"):
            return False  # SQLite compares a text key with a text column; blobs are rare
        schema = "current_schema()" if is_postgresql(self._url) else "DATABASE()"
        found = rows("SELECT data_type FROM information_schema.columns WHERE table_name = "
                     f"'users' AND column_name = 'email' AND table_schema = {schema}", [])
        return bool(found) and str(found[0]["data_type"]).lower() in (
            "bytea", "varbinary", "binary", "blob")

    def _sqlite_rows(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        path = self._url[len("sqlite:"):]
        db = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=self._timeout)
        try:
            cur = db.execute(sql, list(params))
            names = [d[0].lower() for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            db.close()

    def _connect(self) -> Any:
        if is_postgresql(self._url):
            import psycopg

            from scanner.pgsql import connect_bounded
            return connect_bounded(psycopg, self._url, self._timeout, autocommit=True)
        from scanner.quarantine.amavis_mysql import connect_bounded
        return connect_bounded(self._url, self._timeout)

    # -- merging -------------------------------------------------------------------------

    def _resolve(self, fetched: dict[str, list[dict[str, Any]]],
                 wanted: list[tuple[str, list[str]]]) -> dict[str, Any]:
        return {address: self._merged(fetched, keys) for address, keys in wanted}

    def _merged(self, fetched: Mapping[str, list[dict[str, Any]]], keys: list[str]) -> Any:
        ranked = sorted(((-_priority(row.get("priority")), i, key, row)
                         for i, key in enumerate(keys)
                         for row in fetched.get(_amavis_key(key), ())),
                        key=lambda r: (r[0], r[1]))
        if not ranked:
            return None
        settings = [self._settings(row) for _, _, _, row in ranked]
        merged = first_set(settings)
        for name in ("allow_senders", "block_senders"):  # every row's entries
            entries = [e for each in settings for e in each.get(name, ())]
            if entries:
                merged[name] = list(dict.fromkeys(entries))
        scores: dict[str, float] = {}
        for each in settings:
            for pattern, points in each.get("sender_scores", {}).items():
                scores.setdefault(pattern, points)
        if scores:
            merged["sender_scores"] = scores
        local = local_by_rank((key, _flag(row.get("local"))) for _, _, key, row in ranked)
        if local is not None:
            merged["local"] = local
        first = ranked[0][3]["email"]
        return build(PolicyOverride, merged, f"users[{first}]", SOURCE) if merged else None

    def _settings(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A row's policy columns as [policy] keys, each checked as the configuration
        file's; a value that fails is logged and left out."""
        good: dict[str, Any] = {}
        for column, value in row.items():
            if value is None:
                continue
            if column in IGNORED:
                if column not in _logged_ignored:
                    _logged_ignored.add(column)
                    log.warning("amavis policy column %s has no equivalent in scanner; "
                                "ignored (logged once)", column)
                continue
            if column in SENDER_LISTS:
                key, converted, problem = column, value, ""
            elif column not in COLUMNS:
                continue
            else:
                key, kind = COLUMNS[column]
                converted, problem = _convert(kind, value)
            if not problem:
                problem = check_setting(self._config, SOURCE, f"users[{row['email']}]."
                                        f"{column}", key, converted)
            if problem:
                log.error("amavis policy for %r: column %s ignored: %s", row["email"],
                          column, problem)
            else:
                good[key] = converted
        return good


def _amavis_key(key: str) -> str:
    """A lookup key as amavis's users table spells it: ``user@`` (a bare user name,
    for local recipients only) is ``user`` there."""
    return key[:-1] if key.endswith("@") and not key.startswith("@") else key


def _rows(db: Any, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    cur = db.cursor()
    try:
        cur.execute(sql, tuple(params))
        names = [str(d[0]).lower() for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        cur.close()


def _close(db: Any) -> None:
    with contextlib.suppress(Exception):
        db.close()


def _text(value: Any) -> str:
    return (bytes(value).decode("utf-8", "replace")
            if isinstance(value, bytes | bytearray | memoryview) else str(value))


def _flag(value: Any) -> bool | None:
    """amavis's Y/N (also 1/0, true/false); None for NULL or anything else."""
    if value is None:
        return None
    text = _text(value).strip().upper()
    if text in ("Y", "1", "T", "TRUE", "YES"):
        return True
    if text in ("N", "0", "F", "FALSE", "NO", ""):
        return False
    return None


def _convert(kind: str, value: Any) -> tuple[Any, str]:
    """A column's value as its [policy] key takes it, and what was wrong with it."""
    if kind == "flag":
        flag = _flag(value)
        return (flag, "") if flag is not None else (None, f"{value!r} is not Y or N")
    if kind in ("number", "count"):
        return number_value(value, whole=kind == "count")
    return _text(value), ""


def _priority(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return -math.inf
    return number if math.isfinite(number) else -math.inf

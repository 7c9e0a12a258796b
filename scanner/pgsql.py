"""PostgreSQL for the stores several filter hosts may share: the quarantine index
(:mod:`scanner.quarantine.index_pg`) and the pen pals memory (:mod:`scanner.penpals_pg`).

Both need the optional ``psycopg`` package (``pip install 'scanner[postgresql]'``) and
create their tables themselves. Hosts starting at the same moment would race on
``CREATE TABLE IF NOT EXISTS`` (the loser fails with a unique violation in the
catalogue), so :func:`create_schema` runs the statements under an advisory lock; and
only when a table is missing, since PostgreSQL checks the CREATE privilege before it
finds that the table exists: a user given only SELECT, INSERT, UPDATE and DELETE on
tables an administrator made would fail on every connection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

MIN_CONNECT_TIMEOUT = 2
"""libpq's smallest connect_timeout: 1 is taken as 2 seconds."""


def create_schema(con: Any, lock_key: int, statements: Iterable[str],
                  tables: Sequence[str]) -> None:
    """Unless every one of ``tables`` exists, run ``statements`` (``CREATE ... IF NOT
    EXISTS``) in one transaction, serialised between hosts and processes by the
    advisory lock ``lock_key``."""
    with con.transaction():  # also on a connection that is not in autocommit mode
        found = con.execute("SELECT count(to_regclass(t)) FROM unnest(%s::text[]) AS t",
                            (list(tables),)).fetchone()[0]
        if found == len(tables):
            return
        con.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
        for statement in statements:
            con.execute(statement)


def table_columns(con: Any, table: str) -> set[str]:
    """The column names of ``table`` (as the search path finds it); empty without it."""
    return {row[0] for row in con.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) "
        "AND attnum > 0 AND NOT attisdropped", (table,)).fetchall()}


def add_columns(con: Any, lock_key: int, table: str,
                columns: Sequence[tuple[str, str]]) -> frozenset[str]:
    """Add the ``(name, SQL type)`` columns ``table`` lacks (a table made by an older
    release), under the advisory lock ``lock_key``; return those that could not be
    added because this user may not alter the table (an administrator's table, a
    role given only SELECT and the like): the caller reads NULL for them."""
    def lacking() -> list[tuple[str, str]]:
        have = table_columns(con, table)
        return [(name, kind) for name, kind in columns if name not in have]

    with con.transaction():
        if not lacking():
            return frozenset()
    import psycopg

    try:
        with con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
            for name, kind in lacking():
                con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {kind}")
    except psycopg.errors.InsufficientPrivilege:
        with con.transaction():
            return frozenset(name for name, _ in lacking())
    return frozenset()


def connect_bounded(psycopg: Any, dsn: str, timeout: float, **kwargs: Any) -> Any:
    """A connection that waits at most ``timeout`` seconds (at least libpq's 2) to be
    made and lets no statement run longer than ``timeout`` (``statement_timeout``, set
    for the session so the URL's own ``options`` are kept); the pen pals memory and the
    policy SQL lookup (:mod:`scanner.policy.sql`) connect so. Over TCP, data the server
    does not acknowledge within ``timeout`` (a network gone) breaks the connection
    (``tcp_user_timeout``), unless the URL sets that itself."""
    given = psycopg.conninfo.conninfo_to_dict(dsn)
    if "tcp_user_timeout" not in given:
        kwargs["tcp_user_timeout"] = max(1, round(timeout * 1000))
    con = psycopg.connect(dsn, connect_timeout=max(MIN_CONNECT_TIMEOUT, math.ceil(timeout)),
                          **kwargs)
    try:
        con.execute("SELECT set_config('statement_timeout', %s, false)",
                    (f"{max(1, round(timeout * 1000))}ms",))
        if not con.autocommit:
            con.commit()
    except BaseException:
        con.close()
        raise
    return con

"""The PostgreSQL quarantine index, for several filter hosts sharing one list.

Needs the ``psycopg`` package (version 3). Each host keeps its files on its own disk
(or on shared storage); the ``host`` column says where a message was stored, and a
release must run on a host that can read the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from scanner.dburl import redact
from scanner.pgsql import add_columns, create_schema, table_columns
from scanner.quarantine.index import ADDED_COLUMNS, SCHEMA, Index, Run
from scanner.quarantine.record import IndexUnavailable, QuarantineError

_LOCK_KEY = 0x5C4A7E1  # advisory lock serialising schema creation between hosts


class PostgresIndex(Index):
    """Index rows in the database named by a ``postgresql://`` URL."""

    def __init__(self, dsn: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise QuarantineError("quarantine.index is a PostgreSQL URL but the psycopg "
                                  "package is not installed (pip install 'psycopg[binary]')"
                                  ) from None
        self._psycopg = psycopg
        self.dsn = dsn
        self.location = redact(dsn)
        self._ready = False

    def _connect(self) -> Any:
        psycopg = self._psycopg
        try:
            con = psycopg.connect(self.dsn, connect_timeout=10)
        except psycopg.Error as exc:
            raise IndexUnavailable(
                f"cannot connect to the quarantine index {self.location}: {exc}") from exc
        if not self._ready:
            try:
                with con.transaction():
                    have = table_columns(con, "quarantine")
                if have and "relative_path" not in have:
                    con.close()
                    raise QuarantineError(
                        f"quarantine index {self.location}: its table 'quarantine' is not "
                        "scanner's (amavis's SQL quarantine has a table of that name): give "
                        "quarantine.index a database of its own, or a schema of its own "
                        "(a URL ending ?options=-csearch_path%3Dscanner)")
                create_schema(con, _LOCK_KEY, SCHEMA, ("quarantine", "quarantine_rcpt"))
                self.missing = add_columns(con, _LOCK_KEY, "quarantine", ADDED_COLUMNS)
                self._ready = True
            except psycopg.Error as exc:
                con.close()
                raise IndexUnavailable(f"quarantine index {self.location}: {exc}") from exc
        return con

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[Run]:
        psycopg = self._psycopg
        con = self._connect()

        def run(sql: str, args: Sequence[Any]) -> Any:
            return con.execute(sql.replace("?", "%s"), tuple(args))

        try:
            with con.transaction():
                yield run
        except psycopg.Error as exc:
            kind = QuarantineError if isinstance(exc, psycopg.IntegrityError) else \
                IndexUnavailable  # a duplicate row is no outage
            raise kind(f"quarantine index {self.location}: {exc}") from exc
        finally:
            con.close()

"""A connection to amavis's MySQL/MariaDB database (README.sql-mysql of amavisd-new),
for ``scanner quarantine import-amavis --sql mysql://...``.

URL: ``mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE`` (``mariadb://`` too), with
``?unix_socket=/run/mysqld/mysqld.sock`` for a local socket and ``?read_default_file=
/etc/mysql/debian.cnf``-style option files left out on purpose: the URL says it all.
The user, password and database are percent-decoded. The PyMySQL package (pure Python,
``pip install 'scanner[mysql]'``) is the driver; the session is made read-only before
anything is read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from scanner.dburl import redact
from scanner.quarantine.record import QuarantineError

SCHEMES = ("mysql://", "mariadb://")
OPTIONS = {"unix_socket", "charset"}


def is_mysql(url: str) -> bool:
    """Whether ``url`` names a MySQL or MariaDB database."""
    return url.startswith(SCHEMES)


def connect_arguments(url: str) -> dict[str, Any]:
    """PyMySQL's ``connect`` arguments for ``url``; a QuarantineError naming what is
    wrong (the password never shown)."""
    where = redact(url)
    parts = urlsplit(url)
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise QuarantineError(f"{where}: give the database after the host, e.g. "
                              "mysql://amavis:PASSWORD@localhost/amavis")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - OPTIONS)
    if unknown:
        raise QuarantineError(f"{where}: unknown parameter(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(sorted(OPTIONS))}")
    try:
        port = parts.port or 3306
    except ValueError:
        raise QuarantineError(f"{where}: the port is not a number") from None
    args: dict[str, Any] = {
        "host": parts.hostname or "localhost", "port": port,
        "user": unquote(parts.username or ""), "password": unquote(parts.password or ""),
        "database": database, "connect_timeout": 10, "read_timeout": 300,
        "charset": query.get("charset", ["utf8mb4"])[-1],
    }
    if "unix_socket" in query:
        args["unix_socket"] = query["unix_socket"][-1]
    return args


def connect_bounded(url: str, timeout: float) -> Any:
    """A PyMySQL connection to ``url`` in autocommit, waiting at most ``timeout``
    seconds (whole, at least 1) to connect and for each read and write, as the SQL log
    and the amavis policy tables use it; raises what PyMySQL raises (ImportError
    without it) or QuarantineError for a bad URL."""
    import pymysql

    args = connect_arguments(url)
    t = max(1, math.ceil(timeout))
    args.update(connect_timeout=t, read_timeout=t, write_timeout=t, autocommit=True)
    return pymysql.connect(**args)


class MysqlReader:
    """Rows of amavis's tables over one read-only PyMySQL connection."""

    def __init__(self, url: str) -> None:
        try:
            import pymysql
        except ImportError:
            raise QuarantineError("reading amavis's MySQL/MariaDB quarantine needs the "
                                  "PyMySQL package (pip install 'scanner[mysql]')") from None
        self.errors: tuple[type[BaseException], ...] = (pymysql.err.Error,)
        try:
            self._con = pymysql.connect(**connect_arguments(url))
            self.rows("SET SESSION TRANSACTION READ ONLY")
        except pymysql.err.Error as exc:
            raise QuarantineError(f"amavis's SQL quarantine {redact(url)}: {exc}") from exc

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._con.cursor() as cur:
            cur.execute(sql, tuple(params) or None)
            return list(cur.fetchall())

    def close(self) -> None:
        self._con.close()

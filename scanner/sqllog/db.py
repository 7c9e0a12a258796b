"""Writing a message's rows into amavis's SQL log, PostgreSQL or MySQL/MariaDB.

One transaction per message, or per batch of the messages that wait (all or none):
the ``maddr`` ids (looked up, inserted where missing), the ``msgs`` rows, the
``msgrcpt`` rows and, with ``quarantine_text``, the held text in 16 KiB ``quarantine``
chunks. A transaction's addresses are taken in sorted order, so two writers
inserting the same new addresses never deadlock. A new address's id comes back from
its own INSERT (PostgreSQL's ``RETURNING``; MySQL's ``LAST_INSERT_ID(id)`` on a
duplicate key, which also holds under InnoDB's repeatable-read snapshot); where another
writer inserted it first, a second look-up finds it. An id is then used without a
look-up for :data:`ID_CACHE_SECONDS` after the last committed row that refers to it
(amavis's documented purges delete only addresses no row refers to, or whole old
partitions); a transaction that rolls back adds nothing to that memory.

The tables may be amavis's newer (bytea/varbinary ids and addresses) or older
(varchar) kind; at connection the column types are read and each value is written in
its column's form: bytes for a binary column, text (7-bit addresses, as amavis's
``$sql_allow_8bit_address`` off) for a character one; ``time_iso`` a timestamp or
amavis's ``YYYYMMDDTHHMMSSZ`` text.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

from scanner.dburl import is_postgresql, redact
from scanner.errors import ScannerError
from scanner.sqllog.rows import Address, MessageRow, address, seven_bit
from scanner.sqllog.schema import CHUNK_SIZE, MYSQL, POSTGRESQL, TABLES

BINARY_TYPES = {"bytea", "binary", "varbinary", "blob", "tinyblob", "mediumblob", "longblob"}
TIME_TYPES = ("timestamp", "datetime")
ID_CACHE_SECONDS = 60.0
"""How long an address's maddr id is used without looking it up again."""
ID_CACHE_SIZE = 20000
MSGS = ("partition_tag, mail_id, secret_id, am_id, time_num, time_iso, sid, policy, "
        "client_addr, size, originating, content, quar_type, quar_loc, dsn_sent, "
        "spam_level, message_id, from_addr, subject, host")
MSGRCPT = ("partition_tag, mail_id, rseqnum, rid, is_local, content, ds, rs, bl, wl, "
           "bspam_level, smtp_resp")


class SqlLogError(ScannerError):
    """The SQL log database could not be used (connection, schema, driver)."""


def yes(flag: bool) -> str:
    return "Y" if flag else "N"


class Database:
    """One connection to the SQL log; ``write`` blocks (call it from a thread)."""

    def __init__(self, url: str, timeout: float, create_tables: bool,
                 need_quarantine: bool = False) -> None:
        self.url, self.where = url, redact(url)
        self._needed = TABLES if need_quarantine else TABLES[:3]
        self.postgresql = is_postgresql(url)
        self._timeout, self._create = timeout, create_tables
        self._con: Any = None
        self._types: dict[str, str] = {}
        # (partition_tag, email) -> (maddr id, when it was last written in a row)
        self._ids: dict[tuple[int, str], tuple[int, float]] = {}
        self.driver = self._driver()
        # a row this database refuses on its own (a duplicate mail_id, a value out of
        # range): the writer drops it instead of trying again
        err = self.driver if self.postgresql else self.driver.err
        self.refused: tuple[type[BaseException], ...] = (err.IntegrityError, err.DataError)

    def _driver(self) -> Any:
        try:
            if self.postgresql:
                import psycopg
                return psycopg
            import pymysql
            return pymysql
        except ImportError:
            extra = "postgresql" if self.postgresql else "mysql"
            raise SqlLogError(f"sql_log.database {self.where} needs the "
                              f"{'psycopg' if self.postgresql else 'PyMySQL'} package "
                              f"(pip install 'scanner[{extra}]')") from None

    # -- connection ----------------------------------------------------------------------

    def open(self) -> None:
        """Connect (if not connected), make missing tables, read the column types."""
        if self._con is not None:
            return
        if self.postgresql:
            from scanner.pgsql import connect_bounded, create_schema

            con = connect_bounded(self.driver, self.url, self._timeout, autocommit=True)
            try:
                if self._create:
                    create_schema(con, 0x5C41A7106, POSTGRESQL, TABLES)
                self._types = self._column_types(con, "current_schema()")
            except BaseException:
                con.close()
                raise
        else:
            con = self._mysql_connect()
        self._con = con
        missing = [t for t in self._needed if not any(k.startswith(f"{t}.") for k in self._types)]
        if missing:
            self.close()
            raise SqlLogError(f"sql_log.database {self.where} has no table "
                              f"{', '.join(missing)}; make amavis's tables (README.sql-pg "
                              "or README.sql-mysql) or set sql_log.create_tables = true")

    def _mysql_connect(self) -> Any:
        from scanner.quarantine.amavis_mysql import connect_bounded

        try:
            con = connect_bounded(self.url, self._timeout)
        except ScannerError as exc:  # a URL it cannot use
            raise SqlLogError(f"sql_log.database: {exc}") from None
        try:
            self._types = self._column_types(con, "DATABASE()")
            if self._create and len({k.split(".")[0] for k in self._types}) < len(TABLES):
                with con.cursor() as cur:
                    for statement in MYSQL:
                        cur.execute(statement)
                self._types = self._column_types(con, "DATABASE()")
        except BaseException:
            con.close()
            raise
        return con

    def _column_types(self, con: Any, schema: str) -> dict[str, str]:
        rows = self._rows(con, "SELECT table_name, column_name, data_type FROM "
                          f"information_schema.columns WHERE table_schema = {schema} "
                          "AND table_name IN (%s, %s, %s, %s)", TABLES)
        return {f"{t}.{c}".lower(): str(kind).lower() for t, c, kind in rows}

    @staticmethod
    def _rows(con: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cur = con.cursor()
        try:
            cur.execute(sql, tuple(params))
            return list(cur.fetchall())
        finally:
            cur.close()

    def close(self) -> None:
        con, self._con = self._con, None
        self._ids.clear()  # the next connection may be to a restored database
        if con is not None:
            with contextlib.suppress(Exception):
                con.close()

    # -- writing -------------------------------------------------------------------------

    def write(self, row: MessageRow, mail_text: bytes | None = None) -> None:
        """The message's rows in one transaction; raises the driver's error."""
        self.write_many([(row, mail_text)])

    def write_many(self, items: Sequence[tuple[MessageRow, bytes | None]]) -> None:
        """Several messages' rows (each with its held text or None) in one transaction:
        all or none; raises the driver's error."""
        self.open()
        with self._transaction() as cur:
            ids = self._address_ids(cur, [(row.partition_tag, a) for row, _ in items
                                          for a in (row.sender, *(r.address
                                                                  for r in row.recipients))])
            cur.executemany(f"INSERT INTO msgs ({MSGS}) VALUES ({', '.join(['%s'] * 20)})",
                            [self._msgs(row, ids[(row.partition_tag, row.sender)])
                             for row, _ in items])
            cur.executemany(f"INSERT INTO msgrcpt ({MSGRCPT}) VALUES "
                            f"({', '.join(['%s'] * 12)})", [
                (row.partition_tag, self._b("msgrcpt.mail_id", row.mail_id), n,
                 ids[(row.partition_tag, r.address)], yes(r.is_local), r.content, r.ds, " ",
                 yes(r.blocklisted), yes(r.allowlisted), r.bspam_level, r.smtp_resp)
                for row, _ in items for n, r in enumerate(row.recipients, 1)])
            chunks = [(row.partition_tag, self._b("quarantine.mail_id", row.mail_id), n,
                       text[at:at + CHUNK_SIZE])
                      for row, text in items if text is not None
                      for n, at in enumerate(range(0, len(text), CHUNK_SIZE), 1)]
            if chunks:
                cur.executemany("INSERT INTO quarantine (partition_tag, mail_id, chunk_ind, "
                                "mail_text) VALUES (%s, %s, %s, %s)", chunks)
        self._remember(ids)  # committed: the ids are real

    def _msgs(self, row: MessageRow, sid: int) -> tuple[Any, ...]:
        return (row.partition_tag, self._b("msgs.mail_id", row.mail_id),
                self._b("msgs.secret_id", row.secret_id), row.am_id, row.time_num,
                self._time(row), sid, row.policy, row.client_addr, row.size,
                yes(row.originating), row.content, row.quar_type,
                self._b("msgs.quar_loc", row.quar_loc), row.dsn_sent, row.spam_level,
                row.message_id, row.from_addr, row.subject, row.host)

    def mark_released(self, mail_id: str, recipients: Sequence[str]) -> int:
        """``msgrcpt.rs = 'R'`` (released) for ``recipients`` of ``mail_id``, as a front
        end marks what it released; the number of rows changed."""
        self.open()
        emails = [self._email(address(r).email) for r in recipients]
        if not emails:
            return 0
        with self._transaction() as cur:
            cur.execute("UPDATE msgrcpt SET rs = 'R' WHERE mail_id = %s AND rid IN "
                        "(SELECT id FROM maddr WHERE email IN "
                        f"({', '.join(['%s'] * len(emails))}))",
                        (self._b("msgrcpt.mail_id", mail_id), *emails))
            return int(cur.rowcount or 0)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        con = self._con
        if self.postgresql:
            with con.transaction(), con.cursor() as cur:
                yield cur
            return
        con.begin()
        cur = con.cursor()
        try:
            yield cur
            con.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                con.rollback()
            raise
        finally:
            cur.close()

    def _address_ids(self, cur: Any, wanted: Sequence[tuple[int, Address]]
                     ) -> dict[tuple[int, Address], int]:
        """The maddr id of each (partition_tag, address), taken in sorted order."""
        ids: dict[tuple[int, Address], int] = {}
        now = time.monotonic()
        for tag, addr in sorted(set(wanted), key=lambda w: (w[0], w[1].email)):
            known = self._ids.get((tag, addr.email))
            if known is not None and now - known[1] < ID_CACHE_SECONDS:
                ids[(tag, addr)] = known[0]
                continue
            email = self._email(addr.email)
            ids[(tag, addr)] = (self._find(cur, tag, email)
                                or self._insert(cur, tag, email, addr))
        return ids

    def _remember(self, ids: dict[tuple[int, Address], int]) -> None:
        """Keep the ids of addresses a committed row refers to, for
        :data:`ID_CACHE_SECONDS`: amavis's purges delete only addresses no row refers
        to, and the rows just written refer to these."""
        if len(self._ids) >= ID_CACHE_SIZE:
            self._ids.clear()
        now = time.monotonic()
        for (tag, addr), found in ids.items():
            self._ids[(tag, addr.email)] = (found, now)

    def _find(self, cur: Any, tag: int, email: str | bytes) -> int | None:
        cur.execute("SELECT id FROM maddr WHERE partition_tag = %s AND email = %s "
                    "ORDER BY id LIMIT 1", (tag, email))
        found = cur.fetchone()
        return int(found[0]) if found else None

    def _insert(self, cur: Any, tag: int, email: str | bytes, addr: Address) -> int:
        values = (tag, email, addr.domain)
        if self.postgresql:
            cur.execute("INSERT INTO maddr (partition_tag, email, domain) VALUES "
                        "(%s, %s, %s) ON CONFLICT DO NOTHING RETURNING id", values)
            made = cur.fetchone()
            if made:
                return int(made[0])
            found = self._find(cur, tag, email)  # another writer's, committed meanwhile
            if found is None:
                raise SqlLogError(f"maddr: {addr.email!r} neither inserted nor found")
            return found
        cur.execute("INSERT INTO maddr (partition_tag, email, domain) VALUES (%s, %s, %s) "
                    "ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)", values)
        return int(cur.lastrowid)

    # -- column forms --------------------------------------------------------------------

    def _binary(self, column: str) -> bool:
        return self._types.get(column, "") in BINARY_TYPES

    def _b(self, column: str, value: str) -> str | bytes:
        return value.encode("utf-8") if self._binary(column) else value

    def _email(self, email: str) -> str | bytes:
        return email.encode("utf-8") if self._binary("maddr.email") else seven_bit(email)

    def _time(self, row: MessageRow) -> Any:
        if self._types.get("msgs.time_iso", "").startswith(TIME_TYPES):
            return row.time_iso
        return row.time_iso.strftime("%Y%m%dT%H%M%SZ")


def driver_problem(url: str) -> str | None:
    """Why ``url``'s database driver cannot be used here, or None."""
    try:
        Database(url, 1.0, False)
    except SqlLogError as exc:
        return str(exc)
    return None


def mark_released(cfg: Any, mail_id: str, recipients: Sequence[str]) -> None:
    """Mark a release in the SQL log of ``cfg`` (``[sql_log]``): its own connection,
    bounded by ``cfg.timeout``; raises what the database raised."""
    db = Database(cfg.database, cfg.timeout, False)
    try:
        db.mark_released(mail_id, recipients)
    finally:
        db.close()

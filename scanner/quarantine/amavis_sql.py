"""amavis's SQL quarantine brought over: ``scanner quarantine import-amavis --sql URL``.

Sites with a web front end (iRedMail, Modoboa) often let amavis quarantine into its SQL
database (``$*_quarantine_method = 'sql:'``): the message in the ``quarantine`` table,
cut into ``mail_text`` chunks, and its facts in ``msgs`` and ``msgrcpt`` (README.sql-pg
of amavisd-new). This reads a PostgreSQL one (the ``psycopg`` package, as the
PostgreSQL quarantine index uses), or a MySQL/MariaDB one: every message of ``msgs``
quarantined to SQL (``quar_type = 'Q'``) that has its text, unless amavis released or the front end
deleted it for every recipient (``msgrcpt.rs`` R or D). Each becomes held mail of ours
with amavis's mail_id **and secret_id** (release links built from them keep working),
held since ``msgs.time_num``, of the category ``msgs.content`` names. The text is read
as a quarantine file's is (:func:`scanner.quarantine.amavis_import.parse_text`: amavis
puts the same envelope fields in front); where it lacks ``X-Envelope-To-Blocked``,
``msgrcpt.ds`` (anything but P, passed) says whom the message was held for. Nothing in
amavis's database is changed. A MySQL or MariaDB one (README.sql-mysql: the same tables,
``varbinary`` and ``blob`` columns; iRedMail's default) is read the same way through
PyMySQL (:mod:`scanner.quarantine.amavis_mysql`); the queries are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from scanner.dburl import is_postgresql, redact
from scanner.quarantine.amavis_import import (
    ImportResult,
    make_quarantine_directory,
    parse_text,
    store_message,
)
from scanner.quarantine.amavis_mysql import MysqlReader, is_mysql
from scanner.quarantine.record import QuarantineError

if TYPE_CHECKING:
    from scanner.quarantine.store import Quarantine

# msgs.content / msgrcpt.content: amavis's content type letters (README.sql-pg)
CONTENT = {"V": "VIRUS", "B": "BANNED", "U": "UNCHECKED", "S": "SPAM", "Y": "SPAMMY",
           "s": "SPAMMY", "M": "BAD-HEADER", "H": "BAD-HEADER", "O": "OVERSIZED",
           "C": "CLEAN"}
_MESSAGES = """
SELECT m.partition_tag, m.mail_id, m.secret_id, m.time_num, m.content,
       (SELECT count(*) FROM msgrcpt r
         WHERE r.partition_tag = m.partition_tag AND r.mail_id = m.mail_id) AS rcpts,
       (SELECT count(*) FROM msgrcpt r
         WHERE r.partition_tag = m.partition_tag AND r.mail_id = m.mail_id
           AND r.rs IN ('R', 'D')) AS done
  FROM msgs m
 WHERE m.quar_type = 'Q'
   AND EXISTS (SELECT 1 FROM quarantine q
                WHERE q.partition_tag = m.partition_tag AND q.mail_id = m.mail_id)
 ORDER BY m.time_num, m.mail_id"""
_TEXT = ("SELECT mail_text FROM quarantine WHERE partition_tag = %s AND mail_id = %s "
         "ORDER BY chunk_ind")
_BLOCKED = ("SELECT a.email FROM msgrcpt r JOIN maddr a ON a.id = r.rid "
            "WHERE r.partition_tag = %s AND r.mail_id = %s AND r.ds <> 'P' "
            "ORDER BY r.rseqnum")


def import_sql(q: Quarantine, url: str, *, dry_run: bool = False) -> ImportResult:
    """Import amavis's SQL quarantine at ``url`` (``postgresql://...``, ``mysql://...``)."""
    out = ImportResult()
    where = redact(url)
    reader = _open(url, where)
    try:
        rows = reader.rows(_MESSAGES)
        if not dry_run:
            make_quarantine_directory(q.directory)
        have = q.index.known([_text(row[1]) for row in rows])  # one query
        for row in rows:
            _one_message(q, reader, row, where, out, dry_run, have)
    except reader.errors as exc:
        raise QuarantineError(f"amavis's SQL quarantine {where}: {exc}") from exc
    finally:
        reader.close()
    return out


class _PgReader:
    """Rows of amavis's tables over one read-only psycopg connection."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise QuarantineError("reading amavis's PostgreSQL quarantine needs the psycopg "
                                  "package (pip install 'psycopg[binary]')") from None
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        try:
            self._con = psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as exc:
            raise QuarantineError(f"amavis's SQL quarantine {redact(url)}: {exc}") from exc
        self._con.read_only = True

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._con.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        self._con.close()


def _open(url: str, where: str) -> Any:
    """A reader (``rows(sql, params)``, ``errors``, ``close()``) of the database."""
    if is_postgresql(url):
        return _PgReader(url)
    if is_mysql(url):
        return MysqlReader(url)
    raise QuarantineError(f"{where}: amavis's SQL quarantine is read from PostgreSQL "
                          "(postgresql://...) or MySQL/MariaDB (mysql://...)")


def _one_message(q: Quarantine, reader: Any, row: tuple, where: str, out: ImportResult,
                 dry_run: bool, have: set[str]) -> None:
    partition, raw_id, secret, time_num, content, rcpts, done = row
    mail_id = _text(raw_id)
    label = f"{where} mail_id {mail_id}" + (f"[{partition}]" if partition else "")
    if rcpts and done == rcpts:
        out.ignored.append(f"{label}: released or deleted in amavis for every recipient")
        return
    if mail_id in have:
        out.present.append(mail_id)
        return
    try:
        data = b"".join(bytes(c[0]) for c in reader.rows(_TEXT, (partition, raw_id)))
        msg = parse_text(data, mail_id=mail_id,
                         category=CONTENT.get(_text(content or "").strip(), "CLEAN"),
                         stored_at=float(time_num), secret_id=_text(secret or b""))
        if msg.held_for is None:  # a text without X-Envelope-To-Blocked: msgrcpt knows
            blocked = [_text(r[0]) for r in reader.rows(_BLOCKED, (partition, raw_id))]
            msg = replace(msg, held_for=blocked)
        out.added.append(store_message(q, msg, dry_run=dry_run))
    except QuarantineError as exc:
        out.failed.append(f"{label}: {exc}")


def _text(value: Any) -> str:
    """A bytea (or text) column as text."""
    if isinstance(value, memoryview | bytes | bytearray):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)

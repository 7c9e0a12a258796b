"""Shared pieces of the SQL log tests: a fresh database of either kind, rows to write,
and amavis's own query joining msgs, msgrcpt and maddr (README.sql-pg)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from scanner.quarantine.amavis_mysql import connect_arguments
from scanner.sqllog.rows import Address, MessageRow, RecipientRow, address

KINDS = ["postgresql", "mysql"]


def fresh(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL of a database of ``kind`` holding no SQL log tables."""
    if kind == "postgresql":
        url = request.getfixturevalue("pg_url")
        run(url, "DROP TABLE IF EXISTS maddr, msgs, msgrcpt, quarantine")
        return url
    url = request.getfixturevalue("mariadb_url")
    run(url, "DROP TABLE IF EXISTS maddr, msgs, msgrcpt, quarantine")
    return url


def connect(url: str) -> Any:
    if url.startswith("postgresql"):
        import psycopg
        return psycopg.connect(url, autocommit=True)
    import pymysql
    return pymysql.connect(**connect_arguments(url), autocommit=True)


def run(url: str, *statements: str) -> None:
    with contextlib.closing(connect(url)) as con:
        cur = con.cursor()
        for statement in statements:
            cur.execute(statement)
        cur.close()


def rows(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(connect(url)) as con:
        cur = con.cursor()
        cur.execute(sql, params)
        found = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                 for r in cur.fetchall()]
        cur.close()
        return found


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


# amavis's "mail from last two minutes" example, less its time window
AMAVIS_QUERY = """
SELECT msgs.mail_id, msgrcpt.content, msgs.dsn_sent, msgrcpt.ds, msgrcpt.bspam_level,
       msgs.size, sender.email, recip.email, msgs.subject, sender.domain, recip.domain,
       msgrcpt.rseqnum, msgrcpt.is_local, msgrcpt.smtp_resp
  FROM msgs LEFT JOIN msgrcpt ON msgs.mail_id = msgrcpt.mail_id
            LEFT JOIN maddr AS sender ON msgs.sid = sender.id
            LEFT JOIN maddr AS recip ON msgrcpt.rid = recip.id
  WHERE msgrcpt.content IS NOT NULL
  ORDER BY msgs.time_num, msgs.mail_id, msgrcpt.rseqnum"""


def recipient(addr: str, *, content: str = "C", ds: str = "P", local: bool = True,
              level: float | None = 1.5) -> RecipientRow:
    return RecipientRow(address=address(addr), is_local=local, content=content, ds=ds,
                        blocklisted=False, allowlisted=False, bspam_level=level,
                        smtp_resp="250 2.0.0 Ok, id=12345-01, from MTA: 250 queued")


def message(mail_id: str = "Ab3-_xYz0123", *, sender: str = "Alice@Mail.Example.ORG",
            rcpts: tuple[str, ...] = ("bob@example.test", "carol@example.test"),
            content: str = "C", quar: str = " ", secret: str = "", tag: int = 0,
            time_num: int = 1765000000, subject: str = "Grüße aus Köln") -> MessageRow:
    return MessageRow(
        partition_tag=tag, mail_id=mail_id, secret_id=secret, am_id="12345-01",
        time_num=time_num, sender=address(sender), policy="MYNETS", client_addr="192.0.2.7",
        size=1234, originating=False, content=content, quar_type=quar,
        quar_loc=mail_id if quar == "Q" else "", dsn_sent="N", spam_level=1.5,
        message_id="<m1@example.org>", from_addr="Alice <alice@mail.example.org>",
        subject=subject, host="mx.example.test",
        recipients=tuple(recipient(r, content=content) for r in rcpts))


__all__ = ["Address", "KINDS", "fresh", "message", "recipient", "rows", "run"]

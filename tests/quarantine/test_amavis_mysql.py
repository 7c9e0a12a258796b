"""``scanner quarantine import-amavis --sql mysql://...``: amavis's MySQL/MariaDB SQL
quarantine (README.sql-mysql of amavisd-new, iRedMail's default) brought over.

amavis's four tables with its MySQL column types (``varbinary`` ids and addresses,
``blob`` text chunks) are made on a private MariaDB server and filled as amavis fills
them; the same messages as the PostgreSQL test (tests/quarantine/test_amavis_sql.py),
and the release goes to a real SMTP next hop (the test sink).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import quote

import pytest

from scanner.quarantine.amavis_mysql import connect_arguments
from scanner.quarantine.amavis_sql import import_sql
from scanner.quarantine.record import QuarantineError
from scanner.quarantine.store import Quarantine
from scanner.reinject.deliver import NextHop
from scanner.testing.sink import Sink

from .test_amavis_sql import amavis_messages, imported_as_amavis_held_it
from .test_cli import cli
from .util import config_text

TABLES = [
    """CREATE TABLE maddr (partition_tag integer DEFAULT 0,
         id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
         email varbinary(255) NOT NULL, domain varchar(255) NOT NULL,
         CONSTRAINT part_email UNIQUE (partition_tag, email)) ENGINE=InnoDB""",
    """CREATE TABLE msgs (partition_tag integer DEFAULT 0, mail_id varbinary(16) NOT NULL,
         secret_id varbinary(16) DEFAULT '', am_id varchar(20) NOT NULL,
         time_num integer unsigned NOT NULL, time_iso char(16) NOT NULL,
         sid bigint unsigned NOT NULL, policy varchar(255) DEFAULT '',
         client_addr varchar(255) DEFAULT '', size integer unsigned NOT NULL,
         originating char(1) DEFAULT ' ' NOT NULL, content char(1), quar_type char(1),
         quar_loc varbinary(255) DEFAULT '', dsn_sent char(1), spam_level float,
         message_id varchar(255) DEFAULT '',
         from_addr varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT '',
         subject varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT '',
         host varchar(255) NOT NULL, PRIMARY KEY (partition_tag, mail_id)) ENGINE=InnoDB""",
    """CREATE TABLE msgrcpt (partition_tag integer DEFAULT 0,
         mail_id varbinary(16) NOT NULL, rseqnum integer DEFAULT 0 NOT NULL,
         rid bigint unsigned NOT NULL, is_local char(1) DEFAULT ' ' NOT NULL,
         content char(1) DEFAULT ' ' NOT NULL, ds char(1) NOT NULL, rs char(1) NOT NULL,
         bl char(1) DEFAULT ' ', wl char(1) DEFAULT ' ', bspam_level float,
         smtp_resp varchar(255) DEFAULT '',
         PRIMARY KEY (partition_tag, mail_id, rseqnum)) ENGINE=InnoDB""",
    """CREATE TABLE quarantine (partition_tag integer DEFAULT 0,
         mail_id varbinary(16) NOT NULL, chunk_ind integer unsigned NOT NULL,
         mail_text blob NOT NULL, PRIMARY KEY (partition_tag, mail_id, chunk_ind))
         ENGINE=InnoDB""",
]


def _message(cur, mail_id: str, text: bytes, *, content: str = "S", quar: str = "Q",
             rcpts: tuple[tuple[str, str, str], ...] = (), secret: str = "s3cretS3cret",
             when: int = 1765000000) -> None:
    """One message as amavis records it: maddr (the sender once), msgs, msgrcpt
    (address, ds, rs) and the text in blob chunks of 100 bytes."""
    cur.execute("INSERT IGNORE INTO maddr (email, domain) VALUES "
                "(_binary'spammer@example.org', 'org.example')")
    cur.execute("INSERT INTO msgs (mail_id, secret_id, am_id, time_num, time_iso, sid, size, "
                "content, quar_type, host) VALUES (%s, %s, '1-01', %s, '20251206T054640Z', "
                "1, %s, %s, %s, 'mx.example.test')",
                (mail_id.encode(), secret.encode(), when, len(text), content, quar))
    for seq, (address, ds, rs) in enumerate(rcpts, 1):
        cur.execute("INSERT IGNORE INTO maddr (email, domain) VALUES (%s, 'test.example')",
                    (address.encode(),))
        cur.execute("SELECT id FROM maddr WHERE email = %s", (address.encode(),))
        rid = cur.fetchone()[0]
        cur.execute("INSERT INTO msgrcpt (mail_id, rseqnum, rid, ds, rs) VALUES "
                    "(%s, %s, %s, %s, %s)", (mail_id.encode(), seq, rid, ds, rs))
    for ind, start in enumerate(range(0, len(text), 100), 1):
        cur.execute("INSERT INTO quarantine (mail_id, chunk_ind, mail_text) VALUES "
                    "(%s, %s, %s)", (mail_id.encode(), ind, text[start:start + 100]))


@pytest.fixture
def amavis_db(mariadb_url: str) -> str:
    """The URL of a fresh database ``amavis`` holding amavis's tables, filled; read by a
    user with SELECT only, as a front end's read-only account would be."""
    import pymysql

    admin = connect_arguments(mariadb_url)
    with contextlib.closing(pymysql.connect(**admin, autocommit=True)) as con, \
            con.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS amavis")
        cur.execute("CREATE DATABASE amavis")
        cur.execute("USE amavis")
        for table in TABLES:
            cur.execute(table)
        for mail_id, text, kwargs in amavis_messages():
            _message(cur, mail_id, text, **kwargs)
        cur.execute("CREATE USER IF NOT EXISTS 'reader'@'localhost' IDENTIFIED BY 'p@ss/w:rd'")
        cur.execute("GRANT SELECT ON amavis.* TO 'reader'@'localhost'")
    sock = admin["unix_socket"]
    return f"mysql://reader:{quote('p@ss/w:rd', safe='')}@localhost/amavis?unix_socket={sock}"


def test_held_mail_keeps_its_ids_secret_and_time(amavis_db: str, quarantine: Quarantine,
                                                 sink: Sink, hop: NextHop):
    said = imported_as_amavis_held_it(amavis_db, quarantine, sink, hop)
    assert "p@ss" not in "".join(said) and "reader:***@" in said[0]  # no password shown


def test_the_command_and_what_it_refuses(amavis_db: str, tmp_path: Path, sink: Sink):
    config = tmp_path / "scanner.toml"
    config.write_text(config_text(tmp_path / "q", sink.port))
    out = cli(config, "import-amavis", "--sql", amavis_db, "--dry-run")
    assert out.returncode == 1 and out.stdout.decode().count("would import  ") == 2
    assert b"1 message(s) of amavis's SQL quarantine could not be imported" in out.stderr
    wrong = amavis_db.replace("p%40ss", "nope")
    with pytest.raises(QuarantineError, match=r"amavis's SQL quarantine mysql://reader:\*\*\*@"
                                              r"localhost/amavis.*Access denied"):
        import_sql(Quarantine.__new__(Quarantine), wrong)
    for bad, why in (("mysql://u@localhost/", "give the database"),
                     ("mysql://u@localhost/db?ssl=1", r"unknown parameter\(s\) ssl"),
                     ("mysql://u@localhost:port/db", "the port is not a number")):
        with pytest.raises(QuarantineError, match=why):
            import_sql(Quarantine.__new__(Quarantine), bad)


def test_the_reader_cannot_write(amavis_db: str):
    """The session is read-only whatever the account may do."""
    import pymysql

    from scanner.quarantine.amavis_mysql import MysqlReader

    admin_url = amavis_db.split("@", 1)[1]
    reader = MysqlReader("mysql://root@" + admin_url)
    try:
        with pytest.raises(pymysql.err.Error, match="READ ONLY"):
            reader.rows("DELETE FROM msgs")
        assert reader.rows("SELECT count(*) FROM msgs") == [(5,)]
    finally:
        reader.close()

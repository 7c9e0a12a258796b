"""``scanner quarantine import-amavis --sql``: amavis's PostgreSQL quarantine brought over.

amavis's tables (README.sql-pg of amavisd-new: ``maddr``, ``msgs``, ``msgrcpt``,
``quarantine``) are made in a schema of their own on a private PostgreSQL server and
filled as amavis fills them (the text in chunks, with the envelope fields amavis puts
in front); the release goes to a real SMTP next hop (the test sink).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scanner.quarantine.amavis_sql import import_sql
from scanner.quarantine.config import QuarantineConfig
from scanner.quarantine.record import QuarantineError
from scanner.quarantine.release import release
from scanner.quarantine.store import Quarantine
from scanner.reinject.deliver import NextHop
from scanner.testing.sink import Sink

from .test_amavis_import import MESSAGE, _crlf, amavis_file
from .test_cli import cli
from .util import config_text

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")

TABLES = """
CREATE TABLE maddr (id serial PRIMARY KEY, partition_tag integer DEFAULT 0,
                    email bytea NOT NULL, domain varchar(255) NOT NULL);
CREATE TABLE msgs (partition_tag integer DEFAULT 0, mail_id bytea NOT NULL,
                   secret_id bytea DEFAULT '', am_id varchar(20) NOT NULL,
                   time_num integer NOT NULL, time_iso timestamp with time zone NOT NULL,
                   sid integer NOT NULL, policy varchar(255) DEFAULT '',
                   client_addr varchar(255) DEFAULT '', size integer NOT NULL,
                   originating char(1) DEFAULT ' ' NOT NULL, content char(1),
                   quar_type char(1), quar_loc varchar(255) DEFAULT '', dsn_sent char(1),
                   spam_level real, message_id varchar(255) DEFAULT '',
                   from_addr varchar(255) DEFAULT '', subject varchar(255) DEFAULT '',
                   host varchar(255) NOT NULL, PRIMARY KEY (partition_tag, mail_id));
CREATE TABLE msgrcpt (partition_tag integer DEFAULT 0, mail_id bytea NOT NULL,
                      rseqnum integer DEFAULT 0 NOT NULL, rid integer NOT NULL,
                      is_local char(1) DEFAULT ' ' NOT NULL,
                      content char(1) DEFAULT ' ' NOT NULL, ds char(1) NOT NULL,
                      rs char(1) NOT NULL, bl char(1) DEFAULT ' ', wl char(1) DEFAULT ' ',
                      bspam_level real, smtp_resp varchar(255) DEFAULT '',
                      PRIMARY KEY (partition_tag, mail_id, rseqnum));
CREATE TABLE quarantine (partition_tag integer DEFAULT 0, mail_id bytea NOT NULL,
                         chunk_ind integer NOT NULL, mail_text bytea NOT NULL,
                         PRIMARY KEY (partition_tag, mail_id, chunk_ind));
"""


def _message(con, mail_id: str, text: bytes, *, content: str = "S", quar: str = "Q",
             rcpts: tuple[tuple[str, str, str], ...] = (), secret: str = "s3cretS3cret",
             when: int = 1765000000) -> None:
    """One message as amavis records it: msgs, msgrcpt (address, ds, rs) and the text
    in chunks of 100 bytes."""
    con.execute("INSERT INTO maddr (email, domain) VALUES ('spammer@example.org', "
                "'org.example') RETURNING id")
    con.execute("INSERT INTO msgs (mail_id, secret_id, am_id, time_num, time_iso, sid, "
                "size, content, quar_type, host) VALUES (%s, %s, '1-01', %s, now(), 1, %s, "
                "%s, %s, 'mx.example.test')",
                (mail_id.encode(), secret.encode(), when, len(text), content, quar))
    for seq, (address, ds, rs) in enumerate(rcpts, 1):
        rid = con.execute("INSERT INTO maddr (email, domain) VALUES (%s, 'test.example') "
                          "RETURNING id", (address.encode(),)).fetchone()[0]
        con.execute("INSERT INTO msgrcpt (mail_id, rseqnum, rid, ds, rs) VALUES "
                    "(%s, %s, %s, %s, %s)", (mail_id.encode(), seq, rid, ds, rs))
    for ind, start in enumerate(range(0, len(text), 100), 1):
        con.execute("INSERT INTO quarantine (mail_id, chunk_ind, mail_text) VALUES "
                    "(%s, %s, %s)", (mail_id.encode(), ind, text[start:start + 100]))


def amavis_messages() -> list[tuple[str, bytes, dict]]:
    """What the ``amavis_db`` fixtures (this one's, MySQL's) put in amavis's tables:
    (mail_id, text, the rest of ``_message``'s arguments)."""
    both = (("lover@example.test", "P", " "), ("bob@example.test", "D", " "))
    return [
        ("sQLspam00001", amavis_file("sQLspam00001", blocked=["bob@example.test"]),
         {"rcpts": both}),
        # released by amavis for its only recipient: not held any more
        ("sQLreleased1", amavis_file("sQLreleased1", blocked=["bob@example.test"]),
         {"rcpts": (("bob@example.test", "D", "R"),)}),
        # quarantined to a file, not to SQL: left to the files' import
        ("fILEquar0001", amavis_file("fILEquar0001", blocked=[]),
         {"quar": "F", "rcpts": both}),
        # no X-Envelope-To-Blocked in the text (older amavis): msgrcpt.ds says
        ("vIRUSnoBlck1", amavis_file("vIRUSnoBlck1", blocked=None, spam=False),
         {"content": "V", "rcpts": both, "secret": ""}),
        # the text is another message's
        ("wRONGid00001", amavis_file("sQLspam00001", blocked=[]), {"rcpts": both}),
    ]


@pytest.fixture
def amavis_db(pg_url: str) -> str:
    """A URL whose search path is a schema holding amavis's tables, filled."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("DROP SCHEMA IF EXISTS amavis CASCADE")
        con.execute("CREATE SCHEMA amavis")
        con.execute("SET search_path TO amavis")
        con.execute(TABLES)
        for mail_id, text, kwargs in amavis_messages():
            _message(con, mail_id, text, **kwargs)
    sep = "&" if "?" in pg_url else "?"
    return f"{pg_url}{sep}options=-csearch_path%3Damavis"


def test_held_mail_keeps_its_ids_secret_and_time(amavis_db: str, quarantine: Quarantine,
                                                 sink: Sink, hop: NextHop):
    imported_as_amavis_held_it(amavis_db, quarantine, sink, hop)


def imported_as_amavis_held_it(url: str, quarantine: Quarantine, sink: Sink,
                               hop: NextHop) -> list[str]:
    """Import the messages the ``amavis_db`` fixtures fill (this one's, MySQL's) and
    check each came over as amavis held it; release one; import again (nothing new).
    Returns the first import's ignored and failed lines."""
    result = import_sql(quarantine, url)
    assert sorted(r.mail_id for r in result.added) == ["sQLspam00001", "vIRUSnoBlck1"]
    assert [f.split(": ", 1)[1] for f in result.failed] == [
        "its X-Quarantine-ID is sQLspam00001, not wRONGid00001"]
    assert len(result.ignored) == 1 and "sQLreleased1" in result.ignored[0]
    spam = quarantine.get("sQLspam00001")
    assert (spam.secret_id, spam.stored_at, spam.category) == ("s3cretS3cret", 1765000000,
                                                               "SPAM")
    assert spam.held_for == ["bob@example.test"] and spam.score == 12.345
    assert quarantine.read_stored(spam)[1] == _crlf(MESSAGE)  # chunks joined, fields gone
    virus = quarantine.get("vIRUSnoBlck1")
    assert virus.category == "VIRUS" and virus.held_for == ["bob@example.test"]
    assert len(virus.secret_id) == 12  # amavis had none: a new one
    asyncio.run(release(quarantine, hop, "sQLspam00001", recipients=None,
                        requested_by="admin", secret_id="s3cretS3cret"))
    assert sink.received[-1].recipients == ["bob@example.test"]
    assert sink.received[-1].data.partition(b"\r\n")[2] == _crlf(MESSAGE)
    again = import_sql(quarantine, url)
    assert again.added == [] and sorted(again.present) == ["sQLspam00001", "vIRUSnoBlck1"]
    return result.ignored + result.failed


def test_the_command_and_what_it_refuses(amavis_db: str, tmp_path: Path, sink: Sink):
    config = tmp_path / "scanner.toml"
    config.write_text(config_text(tmp_path / "q", sink.port))
    out = cli(config, "import-amavis", "--sql", amavis_db, "--dry-run")
    assert out.returncode == 1 and out.stdout.decode().count("would import  ") == 2
    assert b"1 message(s) of amavis's SQL quarantine could not be imported" in out.stderr
    out = cli(config, "import-amavis", "--sql", "sqlite:///var/lib/amavis/amavis.db")
    assert out.returncode == 1 and b"amavis's SQL quarantine is read from PostgreSQL " \
        b"(postgresql://...) or MySQL/MariaDB (mysql://...)" in out.stderr
    with pytest.raises(QuarantineError, match="amavis's SQL quarantine postgresql://"):
        import_sql(Quarantine.__new__(Quarantine),
                   "postgresql://nobody@/nowhere?host=/nonexistent-dir")


def test_an_index_pointed_at_amaviss_database_says_so(amavis_db: str, tmp_path: Path):
    """amavis's SQL quarantine has a table named quarantine, as scanner's index does:
    an index given amavis's database is refused with the reason, not with an error
    about a column."""
    q = Quarantine(QuarantineConfig(directory=str(tmp_path / "q"), index=amavis_db))
    with pytest.raises(QuarantineError, match="its table 'quarantine' is not scanner's"):
        q.store(mail_id="abcdefghijkl", raw=b"Subject: x\r\n\r\nx\r\n", sender="a@b.test",
                recipients=["c@d.test"], category="SPAM", score=None, symbols=[],
                subject="x", message_id="", client_addr=None, policy_bank="")
    with psycopg.connect(amavis_db) as con:  # nothing of ours was made there
        assert con.execute("SELECT to_regclass('quarantine_rcpt')").fetchone()[0] is None

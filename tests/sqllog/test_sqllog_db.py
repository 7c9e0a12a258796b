"""The SQL log's rows in real PostgreSQL and MariaDB servers, read back with amavis's
own query (README.sql-pg): tables made as amavis documents them, or found made by an
older amavis (varchar ids and addresses), addresses shared between writers, the held
text in chunks, and what the database refuses."""

from __future__ import annotations

import threading

import pytest

from scanner.sqllog.db import Database, SqlLogError
from scanner.sqllog.schema import CHUNK_SIZE

from .util import AMAVIS_QUERY, KINDS, as_text, fresh, message, rows, run


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest) -> str:
    return fresh(request, request.param)


def test_a_message_reads_back_as_amavis_front_ends_query_it(url: str) -> None:
    db = Database(url, 5.0, True, need_quarantine=True)
    text = bytes(range(256)) * 200  # 51,200 octets, every byte value: four chunks
    db.write(message(quar="Q", secret="s3cret-S3cre", content="S"), text)
    db.write(message("Zz9-_second1", sender="", rcpts=("bob@example.test",),
                     time_num=1765000100))
    db.close()
    found = rows(url, AMAVIS_QUERY)
    assert [(as_text(r[0]), r[1], r[2], r[3], as_text(r[6]), as_text(r[7]), r[11])
            for r in found] == [
        ("Ab3-_xYz0123", "S", "N", "P", "alice@mail.example.org", "bob@example.test", 1),
        ("Ab3-_xYz0123", "S", "N", "P", "alice@mail.example.org", "carol@example.test", 2),
        ("Zz9-_second1", "C", "N", "P", "", "bob@example.test", 1)]
    first = found[0]
    assert first[8] == "Grüße aus Köln" and first[5] == 1234
    assert first[9] == "org.example.mail" and first[10] == "test.example"
    assert first[12] == "Y" and abs(first[4] - 1.5) < 1e-6
    assert first[13].startswith("250 2.0.0 Ok")
    # each address once
    assert sorted(as_text(r[0]) for r in rows(url, "SELECT email FROM maddr")) == [
        "", "alice@mail.example.org", "bob@example.test", "carol@example.test"]
    chunks = rows(url, "SELECT chunk_ind, mail_text FROM quarantine ORDER BY chunk_ind")
    assert [c[0] for c in chunks] == [1, 2, 3, 4]
    assert max(len(c[1]) for c in chunks) == CHUNK_SIZE
    assert b"".join(bytes(c[1]) for c in chunks) == text
    meta = rows(url, "SELECT secret_id, quar_type, quar_loc, time_num, originating, "
                     "client_addr, host, am_id, message_id FROM msgs ORDER BY time_num")[0]
    assert [as_text(v) for v in meta] == [
        "s3cret-S3cre", "Q", "Ab3-_xYz0123", "1765000000", "N", "192.0.2.7",
        "mx.example.test", "12345-01", "<m1@example.org>"]


def test_time_iso_is_written_in_the_columns_own_form(url: str) -> None:
    db = Database(url, 5.0, True)
    db.write(message(time_num=1765000000))
    db.close()
    (value,) = rows(url, "SELECT time_iso FROM msgs")[0]
    if url.startswith("postgresql"):  # timestamp with time zone
        assert value.timestamp() == 1765000000
    else:  # amavis's MySQL char(16)
        assert value == "20251206T054640Z"


def test_writers_in_parallel_share_each_address(url: str) -> None:
    """Eight writers, each a connection of its own, log messages from and to the same
    new addresses at once: no deadlock, no failure, one maddr row per address."""
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        db = Database(url, 10.0, True)
        try:
            for i in range(10):
                db.write(message(f"w{n}x{i:02d}-abcde"[:12].ljust(12, "_"),
                                 rcpts=("bob@example.test", f"r{i}@example.test")))
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    Database(url, 5.0, True).open()  # the tables, made once
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert rows(url, "SELECT count(*) FROM msgs")[0][0] == 80
    assert rows(url, "SELECT count(*) FROM msgrcpt")[0][0] == 160
    emails = [as_text(r[0]) for r in rows(url, "SELECT email FROM maddr")]
    assert len(emails) == len(set(emails)) == 12  # alice, bob, r0..r9


def test_the_same_mail_id_twice_is_refused_not_retried(url: str) -> None:
    db = Database(url, 5.0, True)
    db.write(message())
    with pytest.raises(db.refused):
        db.write(message())
    db.write(message("other-mailid"))  # the connection goes on
    db.close()
    assert rows(url, "SELECT count(*) FROM msgs")[0][0] == 2


def test_addresses_of_a_refused_row_are_not_remembered(url: str) -> None:
    """The refused transaction's new address rows are rolled back: the next message to
    the same address must insert it again, not use the id of a row that is gone."""
    db = Database(url, 5.0, True)
    db.write(message())
    with pytest.raises(db.refused):
        db.write(message(rcpts=("new@example.test",)))  # duplicate mail_id
    db.write(message("other-mailid", rcpts=("new@example.test",)))
    db.write(message("third-mailid", rcpts=("new@example.test",)))  # remembered now
    db.close()
    found = [(as_text(r[0]), as_text(r[7])) for r in rows(url, AMAVIS_QUERY)]
    assert ("other-mailid", "new@example.test") in found
    assert ("third-mailid", "new@example.test") in found


def test_without_the_tables_and_create_tables_off_the_error_says_so(url: str) -> None:
    with pytest.raises(SqlLogError, match="has no table maddr, msgs, msgrcpt; make amavis"):
        Database(url, 5.0, False).open()


def test_tables_of_an_older_amavis_with_character_columns(request: pytest.FixtureRequest,
                                                         ) -> None:
    """amavis before 2.6 made addresses, ids and quar_loc varchar: the values go in as
    text, addresses 7-bit (as amavis with $sql_allow_8bit_address off)."""
    url = fresh(request, "postgresql")
    run(url,
        "CREATE TABLE maddr (id serial PRIMARY KEY, partition_tag integer DEFAULT 0, "
        "email varchar(255) NOT NULL UNIQUE, domain varchar(255) NOT NULL)",
        "CREATE TABLE msgs (partition_tag integer DEFAULT 0, mail_id varchar(12) NOT NULL "
        "PRIMARY KEY, secret_id varchar(12) DEFAULT '', am_id varchar(20) NOT NULL, "
        "time_num integer NOT NULL, time_iso char(16) NOT NULL, sid integer NOT NULL, "
        "policy varchar(255) DEFAULT '', client_addr varchar(255) DEFAULT '', "
        "size integer NOT NULL, originating char(1) DEFAULT ' ' NOT NULL, content char(1), "
        "quar_type char(1), quar_loc varchar(255) DEFAULT '', dsn_sent char(1), "
        "spam_level real, message_id varchar(255) DEFAULT '', from_addr varchar(255) "
        "DEFAULT '', subject varchar(255) DEFAULT '', host varchar(255) NOT NULL)",
        "CREATE TABLE msgrcpt (partition_tag integer DEFAULT 0, mail_id varchar(12) NOT "
        "NULL, rseqnum integer DEFAULT 0 NOT NULL, rid integer NOT NULL, is_local char(1) "
        "DEFAULT ' ' NOT NULL, content char(1) DEFAULT ' ' NOT NULL, ds char(1) NOT NULL, "
        "rs char(1) NOT NULL, bl char(1) DEFAULT ' ', wl char(1) DEFAULT ' ', "
        "bspam_level real, smtp_resp varchar(255) DEFAULT '')")
    db = Database(url, 5.0, False)
    db.write(message(sender="jörg@example.org"))
    db.close()
    found = rows(url, AMAVIS_QUERY)
    assert [(r[0], r[6], r[7]) for r in found] == [
        ("Ab3-_xYz0123", "j?rg@example.org", "bob@example.test"),
        ("Ab3-_xYz0123", "j?rg@example.org", "carol@example.test")]
    assert rows(url, "SELECT time_iso FROM msgs") == [("20251206T054640Z",)]


def test_a_week_partition_keeps_addresses_apart(url: str) -> None:
    """maddr rows are per partition_tag (amavis's part_email key): purging an old week
    deletes its addresses without touching the new week's."""
    db = Database(url, 5.0, True)
    db.write(message(tag=49))
    db.write(message("second-mail1", tag=50))
    db.close()
    assert rows(url, "SELECT count(*) FROM maddr WHERE partition_tag = 49")[0][0] == 3
    run(url, "DELETE FROM maddr WHERE partition_tag = 49",
        "DELETE FROM msgrcpt WHERE partition_tag = 49",
        "DELETE FROM msgs WHERE partition_tag = 49")
    assert len(rows(url, AMAVIS_QUERY)) == 2

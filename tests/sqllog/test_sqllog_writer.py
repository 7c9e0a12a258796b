"""The SQL log's writer thread: rows are written after the message, in order; while the
database is down they wait (bounded) and are written once it is back; refused rows are
dropped with a log line; what is left at exit is counted."""

from __future__ import annotations

import logging
import signal
import time

import pytest

from scanner.sqllog import writer as writer_mod
from scanner.sqllog.config import SqlLogConfig
from scanner.sqllog.writer import SqlLog
from tests.pgserver import PgServer

from .util import as_text, fresh, message, rows

# the writer's thread must never die of an exception
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def _wait(predicate, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _ids(url: str) -> list[str]:
    """The logged mail_ids, oldest first ([] before the writer made the tables)."""
    try:
        found = rows(url, "SELECT mail_id FROM msgs ORDER BY time_num")
    except Exception as exc:
        if "does not exist" not in str(exc):
            raise
        return []
    return [as_text(r[0]) for r in found]


def test_rows_wait_while_the_database_is_down_and_land_when_it_is_back(
        request: pytest.FixtureRequest, pg_server: PgServer, monkeypatch, caplog) -> None:
    monkeypatch.setattr(writer_mod, "RETRY_AFTER", 0.2)
    caplog.set_level(logging.INFO, logger="scanner")
    url = fresh(request, "postgresql")
    log = SqlLog(SqlLogConfig(database=url, timeout=2.0))
    log.submit(message("first-mail01", time_num=1765000001))
    assert _wait(lambda: _ids(url) == ["first-mail01"])
    pg_server.stop()
    try:
        for n in range(2, 6):
            log.submit(message(f"while-down-{n}", time_num=1765000000 + n))
        assert _wait(lambda: "SQL log: cannot write to" in caplog.text)
        assert log.waiting == 4
    finally:
        pg_server.start()
    assert _wait(lambda: log.waiting == 0)
    log.close()
    assert _ids(url) == ["first-mail01", *(f"while-down-{n}" for n in range(2, 6))]
    assert caplog.text.count("SQL log: cannot write to") == 1  # once per outage
    assert "answers again after" in caplog.text


def test_beyond_max_waiting_rows_are_dropped_and_counted(pg_server: PgServer, monkeypatch,
                                                         caplog, request) -> None:
    monkeypatch.setattr(writer_mod, "RETRY_AFTER", 0.2)
    url = fresh(request, "postgresql")
    counted: dict[str, int] = {}
    log = SqlLog(SqlLogConfig(database=url, timeout=2.0, max_waiting=3),
                 count=lambda names, by: [counted.__setitem__(n, counted.get(n, 0) + by)
                                          for n in names])
    pg_server.stop()
    try:
        for n in range(5):
            log.submit(message(f"overflow-{n:03d}", time_num=1765000000 + n))
        assert "3 rows wait for" in caplog.text and "1 dropped so far" in caplog.text
    finally:
        pg_server.start()
    log.close(20)
    assert len(_ids(url)) == 3
    assert counted == {"sqllog:dropped": 2, "sqllog:written": 3}  # for scanner status


def test_a_refused_row_is_dropped_and_the_next_ones_written(request, caplog) -> None:
    url = fresh(request, "postgresql")
    log = SqlLog(SqlLogConfig(database=url, timeout=2.0))
    log.submit(message("same-mail-id", time_num=1765000001))
    log.submit(message("same-mail-id", time_num=1765000002))  # the database refuses it
    log.submit(message("next-mail-id", time_num=1765000003))
    assert _wait(lambda: log.waiting == 0)
    log.close()
    assert _ids(url) == ["same-mail-id", "next-mail-id"]
    assert "refused the rows of mail_id same-mail-id" in caplog.text


def test_a_row_that_keeps_failing_is_given_up_after_three_tries(request, monkeypatch,
                                                                caplog) -> None:
    """A statement error that is neither a refusal nor an outage (here a trigger's):
    the row is tried three times, then dropped; the rows behind it are written."""
    monkeypatch.setattr(writer_mod, "RETRY_AFTER", 0.05)
    url = fresh(request, "postgresql")
    log = SqlLog(SqlLogConfig(database=url, timeout=2.0))
    log.submit(message("first-mail01", time_num=1765000001))
    assert _wait(lambda: log.waiting == 0)
    from .util import run
    run(url, "CREATE OR REPLACE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
             "IF NEW.subject = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; "
             "RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER poison BEFORE INSERT ON msgs FOR EACH ROW EXECUTE FUNCTION poison()")
    log.submit(message("poison-mail1", time_num=1765000002, subject="poison"))
    log.submit(message("after-poison", time_num=1765000003))
    assert _wait(lambda: log.waiting == 0)
    log.close()
    assert _ids(url) == ["first-mail01", "after-poison"]
    assert "refused the rows of mail_id poison-mail1 3 times: poisoned row" in caplog.text


def test_rows_left_at_exit_are_counted(pg_server: PgServer, request, caplog) -> None:
    url = fresh(request, "postgresql")
    log = SqlLog(SqlLogConfig(database=url, timeout=1.0))
    pg_server.stop()
    try:
        log.submit(message("left-at-exit"))
        log.close(2.0)
    finally:
        pg_server.start()
    assert "SQL log: 1 rows not written to" in caplog.text
    assert "the database did not answer" in caplog.text


def test_a_hanging_database_holds_up_neither_submit_nor_close(pg_server: PgServer, request,
                                                              caplog) -> None:
    """A server that stopped answering on an open connection (SIGSTOP): queuing rows
    never waits, and a stopping worker waits only the time it gives the rows."""
    url = fresh(request, "postgresql")
    log = SqlLog(SqlLogConfig(database=url, timeout=30.0))
    log.submit(message("before-hang1", time_num=1765000001))
    assert _wait(lambda: log.waiting == 0)
    pg_server.signal_all(signal.SIGSTOP)
    try:
        started = time.monotonic()
        for n in range(200):
            log.submit(message(f"hang-{n:07d}", time_num=1765000002 + n))
        assert time.monotonic() - started < 1.0
        started = time.monotonic()
        log.close(1.0)
        assert time.monotonic() - started < 3.0
    finally:
        pg_server.signal_all(signal.SIGCONT)
    assert "rows not written to" in caplog.text

"""When a worker's SQL log rows are written: after the message's answer, in a thread.

The log is not the mail: a message's rows are handed over once Postfix has its reply,
and a thread of the worker's own writes them (what arrives within :data:`LINGER`
seconds, up to :data:`BATCH` messages, in one transaction; one by one when that
fails), so a slow or unreachable database never holds up mail nor makes it wait in
Postfix's queue (amavis answers 451 then, ``sql-prelim FAILED``). While the database cannot be
reached (or lacks amavis's tables) the rows wait in order, in memory, at most
``max_waiting`` of them (more are dropped and counted); the thread tries again every
:data:`RETRY_AFTER` seconds and logs the outage once when it starts and once when it
ends. A row the database refuses on its own (a duplicate mail_id: written before, its
acknowledgement lost; a value out of range) is dropped with a log line, not retried;
one whose write fails otherwise while the database can be reached is tried
:data:`MAX_ATTEMPTS` times, then dropped the same way, so that one row the database
will not take never holds up the others. At the worker's end the thread gets
``timeout`` seconds to write what waits; what is left is counted in the log. One
thread per process: a thread does not survive a fork.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scanner.dburl import redact
from scanner.quarantine.envelope import amavis_text
from scanner.quarantine.files import read_gz
from scanner.sqllog.config import SqlLogConfig
from scanner.sqllog.db import Database
from scanner.sqllog.rows import MessageRow

log = logging.getLogger("scanner")

RETRY_AFTER = 10.0
"""Seconds between attempts while the database cannot be written."""
BATCH = 100
"""Waiting messages written in one transaction at most."""
LINGER = 0.25
"""Seconds the thread waits for more rows before it writes what waits."""
MAX_ATTEMPTS = 3
"""Writes of one message's rows that may fail on a reachable database (a lost
connection, a statement it will not take) before the rows are given up."""


class SqlLog:
    """A worker's queue of rows and the thread writing them."""

    def __init__(self, cfg: SqlLogConfig,
                 database: Callable[[], Any] | None = None,
                 count: Callable[[list[str], int], None] | None = None) -> None:
        """``count(names, by)``: the scoreboard's counters (``sqllog:written``,
        ``sqllog:dropped``; scanner.serve.scoreboard), for ``scanner status``."""
        self._cfg = cfg
        self._count = count
        self._count_lock = threading.Lock()  # submit (the loop) and the thread drop
        self._make_db = database or (lambda: Database(
            cfg.database, cfg.timeout, cfg.create_tables,
            need_quarantine=cfg.quarantine_text))
        self._db: Any = None
        self._waiting: collections.deque[MessageRow] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closing = False
        self._dropped = 0
        self._down_since: float | None = None
        self._attempts = 0  # failed writes of the first waiting row, the database reached
        self.written = 0

    def submit(self, row: MessageRow) -> None:
        """Queue ``row``; never blocks, never raises."""
        with self._cond:
            if len(self._waiting) >= self._cfg.max_waiting:
                self._dropped += 1
                self._counted("sqllog:dropped")
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    log.error("SQL log: %d rows wait for %s already (sql_log.max_waiting); "
                              "%d dropped so far, mail_id %s the last", len(self._waiting),
                              self._where(), self._dropped, row.mail_id)
                return
            self._waiting.append(row)
            self._cond.notify()
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="sql-log",
                                                daemon=True)
                self._thread.start()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def close(self, seconds: float | None = None) -> None:
        """Write what waits, for at most ``seconds`` (default ``timeout``), then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread if self._pid == os.getpid() else None
        if thread is not None:
            thread.join(self._cfg.timeout if seconds is None else seconds)
        with self._cond:
            left = len(self._waiting)
            self._waiting.clear()
        if left:
            self._counted("sqllog:dropped", left)
            log.error("SQL log: %d rows not written to %s at exit (%s)", left,
                      self._where(), "the database did not answer" if self._down_since
                      else "no time left")
        if self._db is not None and (thread is None or not thread.is_alive()):
            self._db.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closing:
                    self._cond.wait()
                if not self._waiting:
                    return
                # a moment for more rows: one transaction for many costs the worker
                # less CPU than one each (the rows are the log's, never the mail's)
                deadline = time.monotonic() + LINGER
                while len(self._waiting) < BATCH and not self._closing \
                        and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                batch = list(itertools.islice(self._waiting, BATCH))
            done = self._write_batch(batch)
            with self._cond:
                for row in batch[:done]:
                    if self._waiting and self._waiting[0] is row:  # close() may clear it
                        self._waiting.popleft()
                if done:
                    continue
                if self._closing:
                    return
                self._cond.wait(RETRY_AFTER)

    def _write_batch(self, batch: list[MessageRow]) -> int:
        """How many of ``batch`` (from its start) are written or given up on: all of
        them in one transaction, else one by one (a row the database will not take
        spoils only itself), stopping at an outage."""
        if len(batch) > 1 and self._connected():
            try:
                self._db.write_many([self._with_text(row) for row in batch])
            except Exception:  # noqa: S110 (each row again on its own, with its own verdict)
                pass
            else:
                self._attempts = 0
                self._written(len(batch))
                return len(batch)
        done = 0
        for row in batch:
            if not self._write(row):
                break
            done += 1
        return done

    def _connected(self) -> bool:
        """Whether the database can be used (logged as an outage when not)."""
        try:
            if self._db is None:
                self._db = self._make_db()
            self._db.open()
        except Exception as exc:  # the database cannot be reached: wait for it
            self._outage(exc)
            return False
        return True

    def _write(self, row: MessageRow) -> bool:
        """True: written, or given up on; False: try again later."""
        if not self._connected():
            return False
        try:
            self._db.write(*self._with_text(row))
        except Exception as exc:
            self._attempts += 1
            refused = isinstance(exc, self._db.refused)
            if refused or self._attempts >= MAX_ATTEMPTS:
                log.error("(%s) SQL log: %s refused the rows of mail_id %s%s: %s; not "
                          "written", row.am_id, self._where(), row.mail_id,
                          "" if refused else f" {self._attempts} times",
                          str(exc).strip() or type(exc).__name__)
                self._attempts = 0
                self._counted("sqllog:dropped")
                return True
            self._db.close()
            self._outage(exc)
            return False
        self._attempts = 0
        self._written(1)
        return True

    def _counted(self, name: str, by: int = 1) -> None:
        if self._count is not None:
            with self._count_lock:
                self._count([name], by)

    def _written(self, count: int) -> None:
        self.written += count
        self._counted("sqllog:written", count)
        if self._down_since is not None:
            log.info("SQL log: %s answers again after %.0f s; %d rows wait", self._where(),
                     time.monotonic() - self._down_since, len(self._waiting))
            self._down_since = None

    def _with_text(self, row: MessageRow) -> tuple[MessageRow, bytes | None]:
        """``row`` and its held text (a held copy that cannot be read: quar_type F)."""
        text = self._text(row)
        if row.quarantine_file and text is None:
            row = dataclasses.replace(row, quar_type="F", quarantine_file=None)
        return row, text

    def _outage(self, exc: BaseException) -> None:
        """Log the start of an outage (once)."""
        if self._db is not None:
            self._db.close()
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("SQL log: cannot write to %s: %s; rows wait (at most %d) and are "
                      "written when it answers, every %g s; mail goes on", self._where(),
                      str(exc).strip() or type(exc).__name__, self._cfg.max_waiting,
                      RETRY_AFTER)

    @staticmethod
    def _text(row: MessageRow) -> bytes | None:
        """The held copy's text for the quarantine table, as amavis stores it (None:
        none, or unreadable)."""
        if not row.quarantine_file:
            return None
        try:
            return amavis_text(read_gz(Path(row.quarantine_file)))
        except Exception as exc:  # released and deleted already, say
            log.warning("(%s) SQL log: held copy %s unreadable (%s); quar_type F without "
                        "its text", row.am_id, row.quarantine_file, exc)
            return None

    def _where(self) -> str:
        return redact(self._cfg.database)

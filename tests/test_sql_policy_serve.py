"""Policy SQL rows in a running ``scanner serve``: a worker keeps a recipient's row for
a minute, and SIGHUP makes it read the rows anew for the next message."""

from __future__ import annotations

import os
import signal
import smtplib
import sqlite3
import time
from pathlib import Path

import pytest

from scanner.testing.sink import Sink
from tests.helpers import message, smtp, start_filter


def _set_prefix(db: Path, prefix: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS scanner_policy "
                     "(pattern TEXT PRIMARY KEY, settings TEXT NOT NULL)")
        conn.execute("INSERT OR REPLACE INTO scanner_policy VALUES (?, ?)",
                     ("bob@example.test", f'{{"header_prefix": "{prefix}"}}'))
    conn.close()


def _send(port: int, sink: Sink, subject: str) -> bytes:
    before = len(sink.received)
    s = smtp(port)
    assert s.sendmail("a@example.org", ["bob@example.test"], message(subject)) == {}
    s.quit()
    received = sink.wait_for(before + 1)
    assert len(received) == before + 1
    return received[-1].data


def test_sighup_makes_the_workers_read_changed_rows(tmp_path: Path, sink: Sink):
    db = tmp_path / "policy.sqlite"
    _set_prefix(db, "X-One-")
    extra = f'[policy]\ntag_level = -999.0\nsql_lookup = "sqlite:{db}"\n'
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    try:
        assert b"\nX-One-Score:" in _send(port, sink, "first")
        _set_prefix(db, "X-Two-")
        # README: a worker keeps the row it read for 60 s
        assert b"\nX-One-Score:" in _send(port, sink, "cached")
        os.kill(proc.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "SIGHUP: policy SQL rows are read anew" not in "\n".join(proc.log_lines()):
            assert time.monotonic() < deadline, "the worker never reloaded"
            time.sleep(0.1)
        assert b"\nX-Two-Score:" in _send(port, sink, "after SIGHUP")
    finally:
        proc.stop()


def test_serve_warns_at_start_when_the_table_cannot_be_read(tmp_path: Path, sink: Sink):
    """Before the first message is deferred for it, the start says why mail will be."""
    extra = f'[policy]\nsql_lookup = "sqlite:{tmp_path / "missing.sqlite"}"\n'
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    try:
        lines = [ln for ln in proc.log_lines() if "policy SQL table cannot be read" in ln]
        assert lines and "defers every message (451)" in lines[0], proc.log_lines()[-5:]
        s = smtp(port)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("a@example.org", ["bob@example.test"], message("deferred"))
        assert refused.value.smtp_code == 451
        s.quit()
    finally:
        proc.stop()
    assert sink.received == []

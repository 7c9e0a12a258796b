"""The model file watch of ``scanner serve`` (``[checks.settings.bayes] reload_interval``):
the master looks at the file and a change is reloaded as on SIGHUP, off every message's
path; the master keeps the new model for the workers it forks later. Real filter
processes; the models are trained by tests/test_bayes_check.py's fixture."""

from __future__ import annotations

import os
import shutil
import smtplib
import threading
import time
from pathlib import Path

from scanner.checks.base import WatchedFile, file_stamp
from scanner.serve import watch as watch_module
from scanner.serve.watch import FileWatch
from tests.helpers import smtp
from tests.ml.conftest import synthetic_message
from tests.test_bayes_check import (
    _hits,
    _live_model_filter,
    _send,
    _wait_for,
    models,
    swap_break_and_replace_a_worker,
)
from tests.test_failures import _wait_children

__all__ = ["models"]  # the module-scoped fixture, shared with tests/test_bayes_check.py

NORMAL_SECONDS = 3.0
"""Far above what a message takes here (tens of milliseconds), far below the wait for
a model file that is never written."""


def _opening_fifo(pid: int) -> bool:
    """A thread of ``pid`` is blocked opening a FIFO that has no writer yet."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan", encoding="ascii") as fh:
                if fh.read().strip() == "wait_for_partner":
                    return True
        except OSError:  # the thread ended meanwhile
            continue
    return False


def _timed_message(port: int, n: int) -> float:
    """Send one message on a new connection; the seconds it took (fails past
    :data:`NORMAL_SECONDS`)."""
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=NORMAL_SECONDS) as s:
        s.ehlo("postfix.test")
        assert _send(s, synthetic_message(True, n))[0] == 250
    return time.monotonic() - started


def test_a_model_file_whose_read_blocks_delays_no_message(models, tmp_path: Path):
    """The file watch ran inside a message's check: the first message after each
    reload_interval that found the file changed waited while it was read and parsed (on
    a hung file system until message_timeout, then 451). The model file is replaced by
    a FIFO that nobody writes (a read that blocks): messages sent meanwhile, and one
    sent while the worker's reload is blocked opening it, are answered at once with the
    old model; the FIFO's content (one byte) is a bad model, which keeps the old one,
    logged once; a good model put in place afterwards is picked up."""
    normal, inverted = models
    live, sink, proc, port = _live_model_filter(normal, tmp_path, 0.2)
    fifo, link = tmp_path / "model.fifo", tmp_path / "link.model"
    master = proc.proc.pid
    try:
        [worker] = _wait_children(master, 1)
        assert _timed_message(port, 11_000) < NORMAL_SECONDS  # started
        os.mkfifo(fifo)
        os.link(fifo, link)
        os.replace(link, live)  # the model file is now the FIFO
        deadline = time.monotonic() + 30
        n = 11_001
        while not _opening_fifo(worker):  # mail flows while the watch finds the change
            assert time.monotonic() < deadline, "the worker never reloaded the model file"
            assert _timed_message(port, n) < NORMAL_SECONDS
            n += 1
        assert _timed_message(port, n) < NORMAL_SECONDS  # while the reload is blocked
        # the master's check of the changed file opens it too: both get the byte or EOF
        _wait_for("the master's check opening the model", lambda: _opening_fifo(master))
        writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(writer, b"\x85")
        finally:
            os.close(writer)
        _wait_for("the failed reload", lambda: "keeping the current model" in
                  "\n".join(proc.log_lines()))
        tmp = tmp_path / "swap.model"
        shutil.copy(inverted, tmp)
        os.replace(tmp, live)
        _wait_for("the new model", lambda: "model reloaded" in "\n".join(proc.log_lines()))
        with smtp(port) as s:
            assert _send(s, synthetic_message(True, 12_000))[0] == 250
    finally:
        proc.stop()
        sink.stop()
    hits = _hits(proc)
    assert all(h >= 3.0 for h in hits[:-1]) and hits[-1] < 0, hits  # old model, then new
    log = "\n".join(proc.log_lines())
    assert log.count(f"keeping the current model: {live}: ") == 1
    assert log.count(f"model reloaded from {live}") == 1
    assert "Traceback" not in log


def test_a_worker_started_after_the_file_broke_keeps_the_model_the_watch_loaded(
        models, tmp_path: Path):
    """The workers reloaded a model changed on disk, the master did not: a worker forked
    after the file broke (a crash, max_requests, the watchdog) fell back to the model
    the master read at start, and scored its mail with it, for good (the broken file
    does not change again), while the other workers used the new one. Now the master's
    file watch checks the new file as SIGHUP does and keeps its model."""
    def reload(proc, live: Path) -> None:  # type: ignore[no-untyped-def]
        _wait_for("the master's check of the new model", lambda: any(
            f"{live} changed: " in line and " checked; " in line
            for line in proc.log_lines()))

    def failed(proc) -> None:  # type: ignore[no-untyped-def]
        _wait_for("the failed reload", lambda: "keeping the current model" in
                  "\n".join(proc.log_lines()))

    live, proc = swap_break_and_replace_a_worker(models, tmp_path, 0.2, reload, 13_000,
                                                 failed)
    hits = _hits(proc)
    assert len(hits) == 1 and hits[0] < 0, hits  # the model the file watch loaded
    log = "\n".join(proc.log_lines())
    assert f"keeping the model read before: {live}: " in log


def test_a_change_is_reported_once_at_the_files_interval(tmp_path: Path):
    """The watch looks at a file when its interval has passed and reports a change once
    (a broken file is not reloaded, and logged, at every interval); a file with interval
    0 is not watched."""
    path = tmp_path / "m"
    path.write_bytes(b"one")
    watch = FileWatch([WatchedFile(str(path), 5.0, file_stamp(str(path))),
                       WatchedFile(str(tmp_path / "off"), 0.0, None)])
    start = time.monotonic()
    assert watch.paths == [str(path)]
    assert watch.changed(start + 5) == []  # unchanged
    (tmp_path / "new").write_bytes(b"two")
    os.replace(tmp_path / "new", path)
    assert watch.changed(start + 6) == []  # its next look is at start + 10
    assert watch.changed(start + 10) == [str(path)]
    assert watch.changed(start + 15) == []  # once
    path.unlink()
    assert watch.changed(start + 20) == [str(path)]  # gone: a change too
    assert watch.changed(start + 25) == []


def test_a_hung_stat_does_not_hold_the_master(tmp_path: Path, monkeypatch, caplog):
    """The master's main loop looks at the files: a stat that hangs (NFS) must not stop
    it from watching its workers; the change is seen once the stat returns, and the
    hang is logged once."""
    path = tmp_path / "m"
    path.write_bytes(b"one")
    watch = FileWatch([WatchedFile(str(path), 5.0, file_stamp(str(path)))])
    release = threading.Event()

    def hanging_stamp(name: str):  # type: ignore[no-untyped-def]
        release.wait(8)
        return file_stamp(name)

    monkeypatch.setattr(watch_module, "file_stamp", hanging_stamp)
    monkeypatch.setattr(watch_module, "STAT_TIMEOUT", 0.2, raising=False)
    path.write_bytes(b"changed")
    start = time.monotonic()
    began = time.monotonic()
    assert watch.changed(start + 5) == []
    assert watch.changed(start + 10) == []
    assert time.monotonic() - began < 5  # two looks, each given up after 0.2 s
    assert caplog.text.count("takes over") == 1
    release.set()
    assert watch.changed(start + 15) == [str(path)]

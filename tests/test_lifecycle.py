"""The daemon's life cycle with real processes: what workers started later read, signals
that come while the filter starts or stops, and a worker that will not stop."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from scanner.testing.procs import wait_gone
from scanner.testing.sink import Sink
from tests.helpers import message, smtp, start_filter
from tests.test_failures import _children, _wait_children


def _replace_worker(master: int, worker: int) -> int:
    """SIGKILL ``worker`` and wait for the master's replacement; its pid."""
    os.kill(worker, signal.SIGKILL)
    assert wait_gone(worker, 10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = [pid for pid in _children(master) if pid != worker]
        if now:
            return now[0]
        time.sleep(0.05)
    raise AssertionError("no replacement worker")


def test_a_worker_started_later_uses_the_score_files_read_at_start(tmp_path: Path,
                                                                     sink: Sink):
    """Score files are read at start. A worker started later (after a crash, the
    watchdog, max_requests) read them again: one removed or broken since made every new
    worker crash at start, for good, and an edited one scored that worker's mail
    differently from the others'."""
    scores = tmp_path / "site-scores.toml"
    scores.write_text("[symbols.SITE_EXAMPLE]\nweight = 1.0\n")
    extra = ('[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
             f'score_files = ["{scores}"]\n')
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    try:
        [worker] = _wait_children(proc.proc.pid, 1)
        scores.unlink()
        _replace_worker(proc.proc.pid, worker)
        s = smtp(port)  # the new worker greets (it crashed at start, again and again)
        assert s.sendmail("a@example.org", ["b@example.test"], message("later")) == {}
        s.quit()
    finally:
        proc.stop()
    assert len(sink.received) == 1
    assert not any("worker crashed" in line for line in proc.log_lines())

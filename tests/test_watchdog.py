"""The watchdog through a real Postfix: a stuck worker is replaced and nothing is lost.

A check that holds its worker's event loop (fault injection ``block``) stops the
worker's heartbeat; the master must kill it after ``server.watchdog_timeout``, start a
new one, and Postfix must deliver the message on retry (the marker file makes the
retry pass). A stage stuck in the thread pool (``block_thread``) must make its worker
retire itself once it is older than message_timeout + watchdog_timeout. ``scanner
status`` must show the kills, restarts and counters. A worker that has handled
``server.max_requests`` messages makes way for a fresh one without losing any.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from tests.helpers import message, smtp, start_filter
from tests.postfix_stack import Stack, delivered_ids, require_postfix, wait_ids


def _fault_config(mode: str, once_dir: str, seconds: int) -> str:
    return f"""
[checks]
disabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]
enabled = ["*", "fault_injection"]
[checks.settings.fault_injection]
mode = "{mode}"
seconds = {seconds}
once_dir = "{once_dir}"
"""


def _msg(mid: str, fault: bool = False) -> bytes:
    extra = b"X-Scanner-Fault: yes\r\n" if fault else b""
    return (b"From: a@example.org\r\nTo: bob@example.test\r\nSubject: watchdog test\r\n"
            b"Message-ID: <" + mid.encode() + b"@example.org>\r\n" + extra + b"\r\nbody\r\n")


def _status(status_file: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "scanner", "status", "--file", status_file,
                          "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def _wait_log(stack: Stack, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = "\n".join(stack.filter.log_lines())
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not logged in {timeout:g} s:\n"
                         + "\n".join(stack.filter.log_lines()[-20:]))


@pytest.fixture
def stack_factory():
    require_postfix()
    stacks: list[Stack] = []

    def factory(**kw: object) -> Stack:
        s = Stack(**kw)  # type: ignore[arg-type]
        stacks.append(s)
        return s

    yield factory
    for s in stacks:
        s.remove()


@pytest.mark.postfix
@pytest.mark.slow
def test_stuck_event_loop_is_killed_and_its_mail_retried(stack_factory, tmp_path):
    once = tmp_path / "once"
    once.mkdir()
    status_file = str(tmp_path / "status")
    stack = stack_factory(extra=_fault_config("block", str(once), 3600),
                          server_extra=f'watchdog_timeout = 3\nstatus_file = "{status_file}"')
    stack.start()
    stack.postfix.send("a@example.org", "bob@example.test", _msg("stuck-1", fault=True))
    text = _wait_log(stack, "unresponsive for", 60)
    assert "last stage 'check fault_injection'" in text, text
    # while and after the stuck worker is replaced, other mail flows
    wanted = {"<stuck-1@example.org>"}
    for i in range(10):
        stack.postfix.send("a@example.org", "bob@example.test", _msg(f"after-{i}"))
        wanted.add(f"<after-{i}@example.org>")
    ids = wait_ids(stack, wanted, 120)
    assert {m: c for m, c in ids.items() if c > 1} == {}, "duplicates"
    assert len(list(once.iterdir())) == 1, "the blocking message was scanned again"
    status = _status(status_file)
    assert status["running"] and status["watchdog_kills"] == 1
    assert status["worker_restarts"] == 1
    assert status["counters"]["messages"] >= 11
    assert status["counters"]["category:CLEAN"] >= 11
    assert all(w["heartbeat_age"] < 3 for w in status["workers"])
    assert delivered_ids(stack)["<stuck-1@example.org>"] == 1


@pytest.mark.postfix
@pytest.mark.slow
def test_stage_stuck_in_the_thread_pool_retires_the_worker(stack_factory, tmp_path):
    once = tmp_path / "once"
    once.mkdir()
    # message_timeout 5 s answers 451; the thread sleeps on; at 5 + 2 s it is an orphan
    stack = stack_factory(extra=_fault_config("block_thread", str(once), 3600), workers=1,
                          server_extra="watchdog_timeout = 2\ninline_cpu_max_size = 0")
    stack.filter.config_path.write_text(
        stack.filter.config_path.read_text().replace("message_timeout = 20",
                                                     "message_timeout = 5"))
    stack.start()
    stack.postfix.send("a@example.org", "bob@example.test", _msg("orphan-1", fault=True))
    text = _wait_log(stack, "stuck in the thread pool", 60)
    assert "processing timed out after 5 s" in text
    ids = wait_ids(stack, {"<orphan-1@example.org>"}, 90)
    assert ids["<orphan-1@example.org>"] == 1
    text = _wait_log(stack, "retired; starting a new one", 30)
    # the new worker takes mail
    stack.postfix.send("a@example.org", "bob@example.test", _msg("orphan-2"))
    wait_ids(stack, {"<orphan-2@example.org>"}, 60)


def test_workers_make_way_after_max_requests(tmp_path):
    sink = Sink(free_port()).start()
    status_file = tmp_path / "status"
    proc, port = start_filter(tmp_path, sink.port, workers=1,
                              server_extra=f'max_requests = 3\nstatus_file = "{status_file}"')
    try:
        for i in range(10):
            client = smtp(port)  # a new connection each time: the old worker may be gone
            client.sendmail("alice@example.org", ["bob@example.test"],
                            message(f"recycle {i}"))
            client.quit()
            time.sleep(0.4)  # the retirement check runs once a second
        log = "\n".join(proc.log_lines())
        assert log.count("retiring after") >= 2, log
        assert log.count("retired; starting a new one") >= 2
        assert "exited (" not in log
        assert len(sink.received) == 10
        status = _status(str(status_file))
        assert status["worker_restarts"] >= 2 and status["counters"]["messages"] == 10
    finally:
        proc.stop()
        sink.stop()


def test_a_retiring_worker_serves_a_session_that_just_connected(tmp_path):
    """A worker past server.max_requests said 421 to every session between
    transactions, one that had just connected too: Postfix reads a 421 there as the
    filter being down and holds the message for the queue's next run. It now serves a
    session until it has been quiet for RETIRE_QUIET seconds, then makes way."""
    sink = Sink(free_port()).start()
    proc, port = start_filter(tmp_path, sink.port, workers=1,
                              server_extra="max_requests = 1")
    try:
        first = smtp(port)
        first.sendmail("alice@example.org", ["bob@example.test"], message("the last one"))
        second = smtp(port)  # accepted by the same worker, which is now past its limit
        first.quit()
        _wait_log_lines(proc, "retiring after 1 messages", 10)
        time.sleep(1.5)  # the old code's drain answered 421 at once
        second.sendmail("alice@example.org", ["bob@example.test"], message("one more"))
        second.quit()
        _wait_log_lines(proc, "retired; starting a new one", 15)
        assert len(sink.wait_for(2)) == 2
    finally:
        proc.stop()
        sink.stop()


def _wait_log_lines(proc, text: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in "\n".join(proc.log_lines()):
        assert time.monotonic() < deadline, "\n".join(proc.log_lines())
        time.sleep(0.1)


@pytest.mark.postfix
@pytest.mark.slow
def test_a_message_that_keeps_stopping_workers_is_refused_unscanned(stack_factory, tmp_path):
    status_file = str(tmp_path / "status")
    stack = stack_factory(extra=_fault_config("block", "", 3600),  # blocks every time
                          server_extra=f'watchdog_timeout = 3\nstatus_file = "{status_file}"')
    stack.start()
    stack.postfix.send("a@example.org", "bob@example.test", _msg("poison-1", fault=True))
    text = _wait_log(stack, "not scanned again", 120)
    # killed twice while busy with it (server.hang_limit = 2), then refused unscanned
    assert text.count("last stage 'check fault_injection'") == 2, text
    wanted = set()
    for i in range(5):
        stack.postfix.send("a@example.org", "bob@example.test", _msg(f"fine-{i}"))
        wanted.add(f"<fine-{i}@example.org>")
    ids = wait_ids(stack, wanted, 90)
    assert "<poison-1@example.org>" not in ids
    assert len(stack.postfix.queue()) == 1, "Postfix keeps the refused message"
    assert "451 4.3.0 Message stopped the content filter 2 times" in stack.postfix.log_text()
    status = _status(status_file)
    assert status["watchdog_kills"] >= 2 and status["counters"]["hung"] >= 1
    assert [h["count"] for h in status["hung_messages"]] == [2]

"""The daemon's life cycle, mostly with real processes: what workers started later read,
signals that come while the filter starts or stops, a worker that will not stop,
workers that die while starting, a second ``scanner serve`` beside a running one, an
inherited SIGCHLD disposition, and a graceful restart through a real Postfix."""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scanner.serve.scoreboard import Scoreboard, read_board
from scanner.testing.filter import FilterProcess, wait_port
from scanner.testing.postfix import free_port
from scanner.testing.procs import wait_gone
from scanner.testing.sink import Sink
from tests.helpers import filter_config, message, smtp, start_filter
from tests.postfix_stack import Stack, delivered_ids, require_postfix, wait_ids
from tests.test_failures import FAULT, _children, _wait_children
from tests.test_postfix_faults import SLEEP, _send_all


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


def _send_until_scanning(port: int, subject: str) -> socket.socket:
    """A connection whose message (with the fault header) has been sent, so that its
    scan is under way; its greeting and the replies up to 354 read."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=120)
    f = conn.makefile("rb")
    f.readline()
    conn.sendall(b"HELO postfix.test\r\nMAIL FROM:<a@example.org>\r\n"
                 b"RCPT TO:<b@example.test>\r\nDATA\r\n")
    assert [f.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
    conn.sendall(message(subject, extra="X-Scanner-Fault: yes\r\n") + b"\r\n.\r\n")
    return conn


def _wait_stage(status_file: Path, stage: str, timeout: float = 30) -> None:
    """Until a worker has entered ``stage`` (the scoreboard in ``status_file``; the
    checks of a message run side by side, so the stage shown is the one started last)."""
    deadline = time.monotonic() + timeout
    while not any(s.stage.startswith(stage) and s.open_transactions
                  for s in read_board(str(status_file)).slots):
        assert time.monotonic() < deadline, f"no worker entered {stage!r}"
        time.sleep(0.05)


def test_a_worker_stuck_while_the_filter_stops_is_killed_by_the_watchdog(tmp_path: Path,
                                                                          sink: Sink):
    """The watchdog was off while the filter stopped: a worker whose event loop was
    stuck then kept the master waiting for as long as it stayed stuck (for ever, without
    systemd's TimeoutStopSec). Now the master kills it after watchdog_timeout; its
    message got no reply (Postfix retries it) and nothing was relayed."""
    extra = FAULT.format(mode="block") + "seconds = 300\n"
    status = tmp_path / "status"
    proc, port = start_filter(tmp_path, sink.port, extra=extra,
                              server_extra=f'watchdog_timeout = 2\nstatus_file = "{status}"')
    try:
        conn = _send_until_scanning(port, "stuck")
        _wait_stage(status, "check fault_injection")
        proc.proc.send_signal(signal.SIGTERM)
        proc.proc.wait(120)  # the block lasts 300 s
        assert conn.recv(4096) == b""  # closed without a reply to the message
        conn.close()
    finally:
        proc.kill()
    assert any("killing it (scanner is stopping)" in line for line in proc.log_lines())
    assert sink.received == []


def test_a_stopping_worker_that_finishes_a_slow_message_is_not_taken_for_stuck(
        tmp_path: Path, sink: Sink):
    """While the filter stops, a worker whose transaction takes longer than
    watchdog_timeout is healthy: it keeps beating, finishes the message (250 after the
    next hop took it) and exits on its own."""
    extra = FAULT.format(mode="sleep") + "seconds = 5\n"
    status = tmp_path / "status"
    proc, port = start_filter(tmp_path, sink.port, extra=extra,
                              server_extra=f'watchdog_timeout = 1\nstatus_file = "{status}"')
    try:
        conn = _send_until_scanning(port, "slow")
        _wait_stage(status, "check ")
        proc.proc.send_signal(signal.SIGTERM)
        reply = conn.makefile("rb").readline()
        assert reply.startswith(b"250 2.0.0 from MTA"), reply
        assert proc.proc.wait(60) == 0
        conn.close()
    finally:
        proc.stop()
    assert not any("unresponsive" in line for line in proc.log_lines())
    assert len(sink.received) == 1


def test_sighup_while_the_filter_starts_does_not_stop_it(tmp_path: Path, sink: Sink):
    """SIGHUP's default action ended the master while it was starting (here: waiting
    5 s for a clamd that accepts connections and never answers the start-up probe):
    ``systemctl reload`` soon after a start stopped the filter without a log line."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    extra = ('[checks]\ndisabled = ["auth", "dnsbl", "uribl", "bayes"]\n'
             '[checks.settings.clamav]\n'
             f'endpoints = ["tcp:127.0.0.1:{silent.getsockname()[1]}"]\n')
    port = free_port()
    proc = FilterProcess(tmp_path, filter_config(port, sink.port, extra=extra,
                                                 log_file=tmp_path / "scanner.log"), [port])
    try:
        env = {k: v for k, v in os.environ.items() if k != "SCANNER_CONFIG"}
        proc.proc = subprocess.Popen(
            [sys.executable, "-m", "scanner", "serve", "--config", str(proc.config_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while not any("scanner starting" in line for line in proc.log_lines()):
            assert proc.proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.proc.send_signal(signal.SIGHUP)  # during the probe of the silent clamd
        wait_port("127.0.0.1", port, 30)
        assert proc.proc.poll() is None
        with smtp(port) as s:
            assert s.noop()[0] == 250
    finally:
        proc.stop()
        silent.close()


def test_no_worker_is_forked_once_the_master_is_stopping(monkeypatch):
    """A SIGTERM handled between the master's "not stopping, restart the worker" and the
    fork signalled only the workers there were: the new worker, forked next, was never
    told to stop and the master waited for it for ever. (Unit test: the signal is
    simulated by setting the flag its handler sets; the fork is a fake.)"""
    from scanner import config as cfgmod
    from scanner.serve import master as master_mod

    board = Scoreboard(1)
    master = master_mod.Master(cfgmod.load(None), [], "scanner.test", 1, board=board)
    forks = []
    monkeypatch.setattr(master_mod.os, "fork", lambda: forks.append(1) or 999999)
    try:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        master._stopping = True  # SIGTERM came just after the caller looked
        master._spawn(0, restart=True)
        assert forks == [] and master._children == {}
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
    finally:
        board.close()


class _FakeClock:
    """The master's ``time`` module in a unit test: sleeping moves the clock on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_workers_that_die_while_starting_are_restarted_with_growing_delays(monkeypatch,
                                                                            caplog):
    """A worker that died during start-up (here: exit status 1 before its first
    heartbeat) was replaced after a fixed 1 s, and only when it had died within 1 s of
    its fork: a start-up that failed after loading a model for longer than that was
    repeated without pause, for ever, with a traceback each time, and the master slept
    in its signal-handling loop meanwhile. Now each such death is counted and logged,
    and the slot's next worker waits 1, 2, 4, 8 ... s (unit test: fake fork, wait and
    clock; the scoreboard is real, and nobody beats on it)."""
    from scanner import config as cfgmod
    from scanner.serve import master as master_mod

    clock = _FakeClock()
    board = Scoreboard(1)
    master = master_mod.Master(cfgmod.loads("[server]\nwatchdog_timeout = 0\n"), [],
                               "scanner.test", 1, board=board)
    forks: list[float] = []
    dead: list[int] = []

    def fork() -> int:
        forks.append(clock.now)
        if len(forks) == 6:
            master._stopping = True
        pid = (1 << 22) + 1000 + len(forks)  # above pid_max: never a real process
        dead.append(pid)
        return pid

    def waitpid(pid: int, options: int) -> tuple[int, int]:
        if dead:
            clock.now += 2.5  # it loads its checks, then dies
            return dead.pop(), 1 << 8  # exit status 1
        if not master._children:
            raise ChildProcessError
        return 0, 0

    monkeypatch.setattr(master_mod, "time", clock)
    monkeypatch.setattr(master_mod.os, "fork", fork)
    monkeypatch.setattr(master_mod.os, "waitpid", waitpid)
    monkeypatch.setattr(master_mod.signal, "signal", lambda *args: None)
    try:
        assert master.run() == 0
    finally:
        board.close()
    waits = [later - (earlier + 2.5) for earlier, later in itertools.pairwise(forks)]
    assert [round(w) for w in waits] == [1, 2, 4, 8, 16]
    said = [r.getMessage() for r in caplog.records if "died while starting" in r.getMessage()]
    assert len(said) == 5 and "5 time(s) in a row in slot 0" in said[-1]
    assert "starting a new one in 16 s" in said[-1]


def test_a_stopping_filter_refuses_new_connections_while_a_transaction_finishes(
        tmp_path: Path, sink: Sink):
    """While open transactions finished after SIGTERM, the listening sockets stayed
    open in the master and every worker: a new connection (Postfix's next delivery) was
    accepted by the kernel and then waited, without a greeting, until the slowest
    message was done (up to server.message_timeout, longer than Postfix's 300 s
    smtp_helo_timeout), holding one of the transport's delivery agents. Now it is
    refused at once (Postfix defers the mail), and the open transaction still gets its
    250."""
    extra = FAULT.format(mode="sleep") + "seconds = 15\n"
    status = tmp_path / "status"
    proc, port = start_filter(tmp_path, sink.port, extra=extra, workers=2,
                              server_extra=f'status_file = "{status}"')
    try:
        conn = _send_until_scanning(port, "slow")
        _wait_stage(status, "check ")
        proc.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10  # well inside the 15 s of the slow message
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "new connections still accepted"
            time.sleep(0.05)
        assert proc.proc.poll() is None  # still finishing the slow message
        reply = conn.makefile("rb").readline()
        assert reply.startswith(b"250 2.0.0 from MTA"), reply
        assert proc.proc.wait(60) == 0
        conn.close()
    finally:
        proc.stop()
    assert len(sink.received) == 1


def test_a_second_serve_on_the_same_configuration_stops_and_says_why(tmp_path: Path,
                                                                     sink: Sink):
    """A second ``scanner serve`` with the running one's configuration stops with
    exit status 1 naming the listener's address, in the log file too (it said "scanner
    starting" there and nothing more), and leaves the running filter, its pid file
    and its status file alone."""
    status, pid_file = tmp_path / "status", tmp_path / "scanner.pid"
    proc, port = start_filter(tmp_path, sink.port,
                              server_extra=f'status_file = "{status}"\n'
                                           f'pid_file = "{pid_file}"')
    try:
        second = subprocess.run(
            [sys.executable, "-m", "scanner", "serve", "--config", str(proc.config_path)],
            capture_output=True, text=True, timeout=60)
        why = f"cannot listen on 127.0.0.1:{port} (smtp listener): Address already in use"
        assert second.returncode == 1 and f"scanner: {why}" in second.stderr
        assert "Traceback" not in second.stderr
        assert any(f"{why}; not starting" in line for line in proc.log_lines())
        assert pid_file.read_text().strip() == str(proc.proc.pid)
        assert read_board(str(status)).master_pid == proc.proc.pid
        with smtp(port) as s:
            assert s.sendmail("a@example.org", ["b@example.test"], message("first")) == {}
    finally:
        proc.stop()
    assert len(sink.received) == 1


@pytest.mark.postfix
@pytest.mark.slow
def test_a_graceful_restart_under_load_delivers_everything_once(tmp_path: Path):
    """SIGTERM while a real Postfix hands over mail and messages are being scanned:
    those in the filter are finished and relayed before it exits, the others are
    deferred by Postfix (connection refused or closed without a greeting) and delivered
    after the restart; nothing is lost and, with no kill in SMTP's window, nothing is
    delivered twice."""
    require_postfix()
    status = tmp_path / "status"
    stack = Stack(extra=SLEEP, server_extra=f'status_file = "{status}"').start()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(_send_all, stack, [f"term-{i}" for i in range(20)], True)
            _wait_stage(status, "check ")  # a message is being scanned
            assert stack.filter.proc is not None
            stack.filter.proc.send_signal(signal.SIGTERM)
            assert stack.filter.proc.wait(60) == 0
            stack.filter.proc = None
            wanted = future.result(60)
        before = delivered_ids(stack)
        assert before and all(c == 1 for c in before.values())  # the ones in flight
        stack.filter.start()
        stack.postfix.flush()
        ids = wait_ids(stack, wanted, 120)
        assert {m: c for m, c in ids.items() if c > 1} == {}
    finally:
        stack.remove()


def test_a_master_started_with_sigchld_ignored_still_replaces_its_workers(tmp_path: Path,
                                                                          sink: Sink):
    """SIGCHLD set to SIG_IGN by the process that started scanner serve is inherited
    across exec, and the kernel then reaps exited children by itself: the master never
    saw a worker die, so it was not replaced, and when the only one died the master
    found no children left and exited ("all workers stopped") with nothing serving."""
    port = free_port()
    proc = FilterProcess(tmp_path, filter_config(port, sink.port,
                                                 log_file=tmp_path / "scanner.log"), [port])
    try:
        env = {k: v for k, v in os.environ.items() if k != "SCANNER_CONFIG"}
        proc.proc = subprocess.Popen(
            [sys.executable, "-m", "scanner", "serve", "--config", str(proc.config_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
        wait_port("127.0.0.1", port, 30)
        [worker] = _wait_children(proc.proc.pid, 1)
        _replace_worker(proc.proc.pid, worker)
        assert proc.proc.poll() is None
        with smtp(port) as s:
            assert s.sendmail("a@example.org", ["b@example.test"], message("after")) == {}
    finally:
        proc.kill()
    assert len(sink.received) == 1


def test_a_second_serve_with_the_same_pid_file_leaves_the_running_ones_alone(
        tmp_path: Path, sink: Sink):
    """A second ``scanner serve`` on another port with the same pid and status files (a
    copy of the configuration for a test) wrote its pid over the running master's,
    then stopped on the locked status file and removed the pid file on its way out:
    the running filter had none left. It now stops at the pid file, naming the pid in
    it, and leaves the file as it was."""
    status, pid_file = tmp_path / "status", tmp_path / "scanner.pid"
    files = f'status_file = "{status}"\npid_file = "{pid_file}"'
    proc, port = start_filter(tmp_path / "one", sink.port, server_extra=files)
    try:
        copy = tmp_path / "copy.toml"
        copy.write_text(filter_config(free_port(), sink.port, server_extra=files,
                                      log_file=tmp_path / "copy.log"))
        second = subprocess.run([sys.executable, "-m", "scanner", "serve", "--config",
                                 str(copy)], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert pid_file.exists() and pid_file.read_text() == f"{proc.proc.pid}\n"
        assert (f"'server.pid_file' {pid_file}: another scanner serve (pid "
                f"{proc.proc.pid}) is using it") in second.stderr
    finally:
        proc.stop()
    assert not pid_file.exists()  # removed by its own master when it stopped


def test_a_worker_told_to_stop_while_it_starts_ends_and_the_master_with_it(tmp_path: Path,
                                                                            sink: Sink):
    """A stop that reaches a worker still loading its checks (held at a start gate, before
    its loop's handlers exist) must not be lost: the worker ends, none is left serving,
    and the master exits. (Its SIGTERM has the default action until then; SIGHUP is the
    one kept pending, tests/test_bayes_check.py.)"""
    gate = tmp_path / "gate"
    extra = ('[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
             'enabled = ["*", "fault_injection"]\n[checks.settings.fault_injection]\n'
             f'start_gate = "{gate}"\n')
    proc, _ = start_filter(tmp_path, sink.port, extra=extra)
    master = proc.proc
    try:
        [worker] = _wait_children(master.pid, 1)
        gate.touch()
        replacement = _replace_worker(master.pid, worker)
        deadline = time.monotonic() + 30
        while not (tmp_path / f"gate.{replacement}").exists():
            assert time.monotonic() < deadline, "the new worker never reached the gate"
            time.sleep(0.02)
        master.send_signal(signal.SIGTERM)
        assert master.wait(30) == 0
        assert wait_gone(replacement, 10)
    finally:
        gate.unlink(missing_ok=True)
        proc.stop()
    assert any("all workers stopped" in line for line in proc.log_lines())


def test_sighups_during_the_masters_configuration_check_do_not_nest(monkeypatch):
    """The master checked the configuration file (it builds every check, as a start
    does: a second or more) inside its SIGHUP handler, so a SIGHUP that came meanwhile
    ran the handler again inside it, and again: a storm of 300 SIGHUPs 5 ms apart
    reached Python's recursion limit (its log lines were lost to RecursionError; one
    outside a try would have ended the master). Unit test, deterministic: the stand-in
    check sends the next SIGHUP itself; fork and wait are fakes, the handler is real."""
    from scanner import config as cfgmod
    from scanner.serve import master as master_mod

    board = Scoreboard(1)
    master = master_mod.Master(cfgmod.loads("[server]\nwatchdog_timeout = 0\n"), [],
                               "scanner.test", 1, board=board)
    child = (1 << 22) + 77  # above pid_max: never a real process
    depth, deepest, checks = [0], [0], []

    def check(*args: object) -> None:
        depth[0] += 1
        deepest[0] = max(deepest[0], depth[0])
        checks.append(depth[0])
        if len(checks) < 20:
            os.kill(os.getpid(), signal.SIGHUP)  # delivered before kill returns
        depth[0] -= 1

    def waitpid(pid: int, options: int) -> tuple[int, int]:
        if not checks:
            os.kill(os.getpid(), signal.SIGHUP)
            return 0, 0
        if len(checks) < 20:
            return 0, 0
        master._stopping = True
        return child, 0

    real_signal = signal.signal
    monkeypatch.setattr(master_mod, "report_config_on_hup", check)
    monkeypatch.setattr(master_mod, "time", _FakeClock())
    monkeypatch.setattr(master_mod.os, "fork", lambda: child)
    monkeypatch.setattr(master_mod.os, "waitpid", waitpid)
    monkeypatch.setattr(master_mod.signal, "signal",
                        lambda sig, handler: real_signal(sig, handler)
                        if sig == signal.SIGHUP else None)
    previous = signal.getsignal(signal.SIGHUP)
    try:
        assert master.run() == 0
    finally:
        real_signal(signal.SIGHUP, previous)
        board.close()
    assert len(checks) == 20 and deepest[0] == 1, checks

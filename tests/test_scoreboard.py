"""The workers' scoreboard, the thread-pool job list and ``scanner status`` (unit level).

The watchdog itself (a real daemon behind a real Postfix) is in tests/test_watchdog.py.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from scanner.cli.status_cmd import as_dict, prometheus, render
from scanner.pipeline.cpu import PoolJobs
from scanner.serve.scoreboard import (
    COUNTERS,
    HANG_RECORDS,
    Scoreboard,
    StatusFileError,
    message_digest,
    read_board,
    summary_counters,
)
from scanner.testing.postfix import free_port


def _task(mail_id: str, raw: bytes = b"x") -> SimpleNamespace:
    return SimpleNamespace(mail_id=mail_id, digest=message_digest(raw))


def test_slot_state_round_trips_through_the_file(tmp_path):
    path = str(tmp_path / "status")
    board = Scoreboard(2, path)
    try:
        board.spawned(1, restart=False)
        board.set_pid(1, 4242)
        slot = board.slot(1)
        slot.begin(_task("AbCdEfGhIjKl"))
        slot.stage(_task("AbCdEfGhIjKl"), "check rules")
        state = read_board(path)
        assert state.master_pid == os.getpid()
        worker = state.slots[1]
        assert (worker.pid, worker.open_transactions) == (4242, 1)
        assert (worker.stage, worker.mail_id) == ("check rules", "AbCdEfGhIjKl")
        assert worker.digest == message_digest(b"x")
        assert time.monotonic() - worker.stage_since < 5
        slot.end(summary_counters(["Blocked"], "SPAM", ["RelayedInbound", "Quarantined"]))
        worker = read_board(path).slots[1]
        assert worker.open_transactions == 0 and worker.mail_id == ""
        counters = worker.counters
        assert counters["messages"] == counters["blocked"] == counters["category:SPAM"] == 1
        assert counters["action:Relayed"] == counters["action:Quarantined"] == 1
        assert counters["passed"] == counters["category:CLEAN"] == 0
        assert read_board(path).slots[0].counters == dict.fromkeys(COUNTERS, 0)
    finally:
        board.close()
    assert read_board(path).master_pid == 0, "a stopped master clears its pid"


def test_a_restarted_slot_keeps_its_counters_and_counts_the_restart(tmp_path):
    board = Scoreboard(1, str(tmp_path / "status"))
    try:
        board.spawned(0, restart=False)
        board.slot(0).begin(_task("A"))
        board.slot(0).end(["messages", "passed", "category:CLEAN"])
        board.killed_by_watchdog()
        board.spawned(0, restart=True)
        state = read_board(board.path)
        assert (state.restarts, state.watchdog_kills) == (1, 1)
        slot = state.slots[0]
        assert slot.starts == 2 and slot.open_transactions == 0
        assert slot.counters["messages"] == 1
        assert state.totals()["category:CLEAN"] == 1
    finally:
        board.close()


def test_heartbeat_moves(tmp_path):
    board = Scoreboard(1)
    board.spawned(0, restart=False)
    before = board.read_slot(0).heartbeat
    time.sleep(0.01)
    board.slot(0).beat()
    assert board.read_slot(0).heartbeat > before
    board.close()


def test_a_second_master_cannot_use_the_same_status_file(tmp_path):
    path = str(tmp_path / "status")
    first = Scoreboard(1, path)
    try:
        with pytest.raises(StatusFileError, match="another scanner serve"):
            Scoreboard(1, path)
    finally:
        first.close()
    Scoreboard(1, path).close()  # free again once the first one is gone


def test_unusable_and_foreign_status_files(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StatusFileError, match="cannot create"):
        Scoreboard(1, str(tmp_path / "file" / "status"))
    (tmp_path / "foreign").write_bytes(b"not a scoreboard at all, just text" * 3)
    with pytest.raises(StatusFileError, match="not a scanner status file"):
        read_board(str(tmp_path / "foreign"))
    with pytest.raises(StatusFileError, match="cannot read"):
        read_board(str(tmp_path / "missing"))
    board = Scoreboard(3, str(tmp_path / "short"))
    board.close()
    data = (tmp_path / "short").read_bytes()
    (tmp_path / "short").write_bytes(data[: len(data) - 10])
    with pytest.raises(StatusFileError, match="truncated"):
        read_board(str(tmp_path / "short"))


def test_summary_counters_name_existing_counters():
    names = summary_counters(["Passed"], "CLEAN", ["RelayedInbound", "TempFailedOutbound",
                                                 "NoBounceInbound"])
    assert names == ["messages", "passed", "category:CLEAN", "action:Relayed",
                     "action:TempFailed", "action:NoBounce"]
    assert set(names) <= set(COUNTERS)


def test_milter_scans_count_their_accepted_action():
    """A message scanned for amavisd-milter (AM.PDP) and passed logs ``AcceptedInbound``
    where the SMTP path logs ``RelayedInbound``: it is counted, as a relayed one is."""
    names = summary_counters(["Passed"], "CLEAN", ["AcceptedInbound", "DiscardedInbound"])
    assert names == ["messages", "passed", "category:CLEAN", "action:Accepted",
                     "action:Discarded"]
    assert set(names) <= set(COUNTERS)


def test_a_message_with_a_passed_and_a_blocked_line_counts_in_both():
    """A lover's copy delivered and another recipient's discarded: two summary lines,
    one message; passed and blocked count lines, as log parsers do."""
    names = summary_counters(["Passed", "Blocked"], "SPAM",
                             ["DiscardedInbound", "RelayedTaggedInbound", "Quarantined"])
    assert names == ["messages", "passed", "blocked", "category:SPAM", "action:Discarded",
                     "action:Relayed", "action:Quarantined"]


def test_archived_messages_have_a_counter():
    """The summary line says ``Archived`` for a copy in ``archive_directory`` or an
    ``archive_to`` mailbox; the status file counts it, as it counts ``Quarantined``."""
    names = summary_counters(["Passed"], "CLEAN", ["RelayedInbound", "Archived"])
    assert names == ["messages", "passed", "category:CLEAN", "action:Relayed",
                     "action:Archived"]
    assert set(names) <= set(COUNTERS)


def _old_version_file(path, version: int, counters: list[int],
                      hang: tuple[bytes, int, float]) -> None:
    """A one-slot status file as a master of an older version wrote it: the same
    header and slot, fewer counters (3: before the Archived counter; 4: before the SQL
    log's two)."""
    header = struct.pack("<8sHHiddII", b"SCANSTAT", version, 1, 4242, time.time(),
                         time.monotonic(), 0, 0).ljust(64, b"\0")
    slot = struct.pack(f"<iIddIHHd24s12s16s{len(counters)}Q" + "16sId" * 8,
                       4243, 1, 0.0, time.monotonic(), 0, 2, 10, 0.0, b"", b"", b"",
                       *counters, *hang, *(b"", 0, 0.0) * 7)
    path.write_bytes(header + slot)


@pytest.mark.parametrize(("version", "missing"), [(3, 3), (4, 2)])
def test_an_older_file_is_read_and_its_hang_records_carried_over(tmp_path, version: int,
                                                                  missing: int):
    """After an upgrade, ``scanner status`` reads the file of the master still running
    the old version (it stopped with "status file version 3, this scanner reads 4"), and
    the new master carries its hang records over."""
    path = tmp_path / "status"
    old = [n + 1 for n in range(len(COUNTERS) - missing)]  # the counters it had
    bad = message_digest(b"bad")
    _old_version_file(path, version, old, (bad, 2, time.time()))
    board = read_board(str(path))
    totals = board.totals()
    assert [totals[c] for c in COUNTERS] == [*old, *[0] * missing]
    assert board.master_pid == 4242 and board.slots[0].connections == 2
    assert [(r.digest, r.count) for r in board.hang_records()] == [(bad.hex(), 2)]
    new = Scoreboard(1, str(path))
    try:
        assert new.carried == 1 and new.slot(0).hangs(bad) == 2
    finally:
        new.close()


def test_status_rendering(tmp_path):
    board = Scoreboard(2, str(tmp_path / "status"))
    try:
        for i in range(2):
            board.spawned(i, restart=False)
            board.set_pid(i, 100 + i)
        board.slot(0).begin(_task("XyXyXyXyXyXy"))
        board.slot(0).stage(_task("XyXyXyXyXyXy"), "unpack")
        board.slot(0).connections(3, 10)
        board.slot(1).connections(0, 10)
        board.slot(1).end(summary_counters(["Passed"], "VIRUS", ["DiscardedInbound"]))
        state = read_board(board.path)
        text = render(state, board.path, running=True)
        assert "unpack mail_id XyXyXyXyXyXy" in text
        assert "VIRUS 1" in text and "Discarded 1" in text
        assert "idle" in text
        data = as_dict(state, board.path, running=True)
        assert data["workers"][0]["open_transactions"] == 1
        assert (data["workers"][0]["connections"], data["workers"][0]["connection_limit"]) \
            == (3, 10)
        assert data["workers"][1]["messages"] == 1 and data["workers"][1]["starts"] == 1
        assert "      1         1    0/10    0" in text  # slot 1: starts, messages, conn, open
        assert "    3/10    1" in text  # slot 0: 3 of its 10 connections, 1 transaction
        assert data["counters"]["category:VIRUS"] == 1
        assert "not running" in render(state, board.path, running=False)
        text = prometheus(state, running=True)
        sample = re.compile(r'^(scanner_[a-z_]+)(\{[a-z]+="[A-Za-z0-9-]+"\})? [0-9.e+-]+$')
        declared = set()
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                declared.add(line.split()[2])
                continue
            if line.startswith("# HELP "):
                continue
            match = sample.match(line)
            assert match, line
            assert match.group(1) in declared, f"{line}: no TYPE line before it"
        assert 'scanner_categories_total{category="VIRUS"} 1\n' in text
        assert 'scanner_worker_open_transactions{slot="0"} 1\n' in text
        assert 'scanner_worker_connections{slot="0"} 3\n' in text
        assert 'scanner_worker_connection_limit{slot="1"} 10\n' in text
        assert "scanner_up 1\n" in text
        assert "scanner_up 0\n" in prometheus(state, running=False)
    finally:
        board.close()


def _scanner(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SCANNER_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_status_command_exit_codes(tmp_path):
    config = tmp_path / "scanner.toml"
    config.write_text("[server]\nworkers = 1\n")
    out = _scanner("status", "--config", str(config))
    assert out.returncode == 2 and "'server.status_file' is empty" in out.stderr
    out = _scanner("status", "--file", str(tmp_path / "missing"))
    assert out.returncode == 1 and "cannot read it" in out.stderr and out.stdout == ""
    board = Scoreboard(1, str(tmp_path / "status"))
    try:
        out = _scanner("status", "--file", board.path)
        assert out.returncode == 0 and f"master {os.getpid()}" in out.stdout
    finally:
        board.close()
    out = _scanner("status", "--file", board.path)
    assert out.returncode == 3 and "not running" in out.stdout


def test_serve_names_the_key_of_an_unusable_status_file(tmp_path):
    (tmp_path / "file").write_text("x")
    config = tmp_path / "scanner.toml"
    config.write_text(f'[server]\nworkers = 1\nstatus_file = "{tmp_path}/file/status"\n'
                      f'[[listeners]]\nport = {free_port()}\n'
                      f'[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
                      f'[quarantine]\ndirectory = "{tmp_path}/q"\nampdp_socket = ""\n')
    out = _scanner("serve", "--config", str(config))
    assert out.returncode != 0
    assert "'server.status_file'" in out.stderr and str(config) in out.stderr


def test_pool_jobs_lists_running_stages_oldest_first():
    jobs = PoolJobs()
    assert jobs.oldest() is None
    release = threading.Event()
    started = threading.Event()

    def stage() -> str:
        started.set()
        release.wait(10)
        return "done"

    thread = threading.Thread(target=jobs.run, args=(b"digest", stage))
    thread.start()
    started.wait(10)
    since, name, digest = jobs.oldest()  # type: ignore[misc]
    assert name.endswith("stage") and time.monotonic() - since < 5 and digest == b"digest"
    release.set()
    thread.join(10)
    assert jobs.oldest() is None
    assert jobs.run(b"", lambda x: x * 2, 21) == 42


def test_master_watchdog_spares_a_starting_worker_and_kills_a_silent_one(tmp_path):
    from scanner import config as cfgmod
    from scanner.serve.master import Master

    path = tmp_path / "scanner.toml"
    path.write_text("[server]\nwatchdog_timeout = 0.5\n")
    config = cfgmod.load(str(path))
    board = Scoreboard(1, str(tmp_path / "status"))
    master = Master(config, [], "scanner.test", 1, board=board)
    child = subprocess.Popen(["sleep", "30"])
    try:
        board.spawned(0, restart=False)
        master._children[child.pid] = (time.monotonic(), 0)
        time.sleep(0.7)
        master._watchdog()  # never beaten yet: still loading its checks
        assert child.poll() is None
        board.slot(0).beat()
        master._watchdog()  # beat just now
        assert child.poll() is None
        time.sleep(0.7)
        master._watchdog()  # silent for longer than watchdog_timeout
        assert child.wait(5) == -9
        assert read_board(board.path).watchdog_kills == 1
    finally:
        if child.poll() is None:
            child.kill()
        board.close()



def test_hang_records_are_summed_over_slots_and_survive_restarts(tmp_path):
    board = Scoreboard(2, str(tmp_path / "status"))
    try:
        for i in range(2):
            board.spawned(i, restart=False)
        bad, other = message_digest(b"bad" * 1000), message_digest(b"other")
        assert board.slot(0).hangs(bad) == 0
        board.slot(0).record_hang(bad)
        board.spawned(0, restart=True)  # the killed worker's successor keeps the record
        board.slot(1).record_hang(bad)
        board.slot(1).record_hang(other)
        assert board.slot(0).hangs(bad) == 2 and board.slot(1).hangs(other) == 1
        board.slot(1).record_hang(bad)
        assert board.slot(0).hangs(bad) == 3
        records = read_board(board.path).hang_records()
        assert [(r.digest, r.count) for r in records] == [(bad.hex(), 3), (other.hex(), 1)]
        # a full list makes way for new digests, oldest first
        for n in range(HANG_RECORDS):
            board.slot(1).record_hang(message_digest(b"%d" % n))
        assert board.slot(1).hangs(other) == 0 and board.slot(0).hangs(bad) == 1
        board.slot(0).record_hang(b"\0" * 16)  # no message: nothing recorded
        assert len(read_board(board.path).slots[0].hang_records) == 1
    finally:
        board.close()


def test_a_new_master_carries_recent_hang_records_over_and_nothing_else(tmp_path,
                                                                        monkeypatch):
    import scanner.serve.scoreboard as sb

    path = str(tmp_path / "status")
    bad, other, stale = (message_digest(b) for b in (b"bad", b"other", b"stale"))
    first = Scoreboard(2, path)
    first.spawned(0, restart=False)
    first.slot(0).record_hang(bad)
    first.slot(1).record_hang(bad)
    first.slot(1).record_hang(other)
    first.slot(0).end(["messages", "passed"])
    first.killed_by_watchdog()
    real_time = time.time
    monkeypatch.setattr(sb.time, "time", lambda: real_time() - sb.HANG_MEMORY - 60)
    first.slot(0).record_hang(stale)  # recorded longer ago than Postfix keeps mail
    monkeypatch.undo()
    first.close()

    second = Scoreboard(1, path)  # fewer slots than before: records are merged
    try:
        assert second.carried == 2
        assert second.slot(0).hangs(bad) == 2 and second.slot(0).hangs(other) == 1
        assert second.slot(0).hangs(stale) == 0
        state = read_board(path)
        assert state.totals() == dict.fromkeys(COUNTERS, 0)  # counters start from zero
        assert (state.restarts, state.watchdog_kills) == (0, 0)
    finally:
        second.close()

    # more records than the new board holds: the newest are kept
    crowded = Scoreboard(3, path)
    for n in range(2 * HANG_RECORDS + 3):
        crowded.slot(n % 3).record_hang(message_digest(b"%d" % n))
    crowded.close()
    small = Scoreboard(1, path)
    try:
        assert small.carried == HANG_RECORDS
        kept = {r.digest for r in read_board(path).hang_records()}
        newest = {message_digest(b"%d" % n).hex()
                  for n in range(HANG_RECORDS + 3, 2 * HANG_RECORDS + 3)}
        assert kept == newest
    finally:
        small.close()


def test_nothing_is_carried_from_a_foreign_or_truncated_file(tmp_path):
    path = tmp_path / "status"
    path.write_bytes(b"not a scoreboard at all, just text" * 3)
    board = Scoreboard(1, str(path))
    assert board.carried == 0 and read_board(str(path)).hang_records() == []
    board.slot(0).record_hang(message_digest(b"bad"))
    board.close()
    path.write_bytes(path.read_bytes()[:-10])
    board = Scoreboard(1, str(path))
    assert board.carried == 0
    board.close()


def test_message_digest_is_stable_and_bounded():
    raw = b"Subject: x\r\n\r\n" + b"a" * (3 << 20)
    assert message_digest(raw) == message_digest(bytes(raw))
    assert message_digest(raw) != message_digest(raw + b"b")  # the length counts
    assert len(message_digest(b"")) == 16


def test_master_blocks_stop_signals_across_fork(tmp_path, monkeypatch):
    """A SIGTERM during a fork must wait until the child is registered (master side) or
    has its own dispositions (child side); otherwise CPython can drop it and a worker
    misses "stop". The parent side is checked here with a fork that only records the
    signal mask it was called with."""
    import signal

    from scanner import config as cfgmod
    from scanner.serve import master as master_mod

    config = cfgmod.load(None)
    board = Scoreboard(1)
    master = master_mod.Master(config, [], "scanner.test", 1, board=board)
    masks = []

    def fake_fork() -> int:
        masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        return 999999  # the parent's view; no child is started

    monkeypatch.setattr(master_mod.os, "fork", fake_fork)
    try:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        master._spawn(0)
        after = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        assert {signal.SIGTERM, signal.SIGINT, signal.SIGHUP} <= masks[0]
        assert after == before and signal.SIGTERM not in after
        assert 999999 in master._children
    finally:
        board.close()

"""Failure handling of the spine: crashing checks, pipeline errors, dying processes,
and configuration errors that name the file and key."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scanner.config import load, loads
from scanner.errors import ConfigError
from scanner.pipeline.processor import Listener, Processor
from scanner.reinject.deliver import NextHop
from scanner.scores import load_scores
from scanner.task import Envelope, Recipient, Task
from scanner.testing.postfix import free_port
from scanner.testing.procs import alive as _alive
from scanner.testing.sink import Sink
from tests.helpers import at_data, message, smtp, start_filter
from tests.test_spine import smtplib_error

FAULT = """
[checks]
disabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]
enabled = ["*", "fault_injection"]
[checks.settings.fault_injection]
mode = "{mode}"
"""


def test_crashing_check_defers_by_default(tmp_path: Path, sink: Sink):
    proc, port = start_filter(tmp_path, sink.port, extra=FAULT.format(mode="always"))
    try:
        s = smtp(port)
        with pytest.raises(smtplib_error()) as err:
            s.sendmail("a@example.org", ["b@example.test"],
                       message("boom", extra="X-Scanner-Fault: yes\r\n"))
        assert err.value.smtp_code == 451
        assert b"FAULT_INJECTION_FAIL" in err.value.smtp_error
        assert s.sendmail("a@example.org", ["b@example.test"], message("fine")) == {}
        s.quit()
    finally:
        proc.stop()
    assert len(sink.received) == 1
    log = "\n".join(proc.log_lines())
    assert "check fault_injection failed" in log and "Traceback" in log
    assert "InjectedFault" in log
    lines = proc.summary_lines()
    assert "Blocked CLEAN {TempFailedInbound}" in lines[0]  # deferred: not passed
    assert "Passed CLEAN {RelayedInbound}" in lines[1]


def test_crashing_check_passes_as_unchecked_when_configured(tmp_path: Path, sink: Sink):
    extra = FAULT.format(mode="always") + '\n[policy]\non_check_failure = "unchecked"\n'
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    try:
        s = smtp(port)
        assert s.sendmail("a@example.org", ["b@example.test"],
                          message("boom", extra="X-Scanner-Fault: yes\r\n")) == {}
        s.quit()
    finally:
        proc.stop()
    assert len(sink.wait_for(1)) == 1
    # its Subject is tagged ***UNCHECKED***: amavis logs such a copy RelayedTagged
    assert any("Passed UNCHECKED {RelayedTaggedInbound}" in ln for ln in proc.summary_lines())


def test_exception_in_pipeline_gives_451_with_id(monkeypatch, caplog):
    def broken(raw: bytes) -> None:
        raise RuntimeError("parser exploded")

    monkeypatch.setattr("scanner.pipeline.processor.parse_headers", broken)
    config = load(None)
    hop = NextHop("127.0.0.1", free_port(), False, 1, 1, "t", True)
    proc = Processor(config, [], load_scores(), hop, "scanner.test")
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=message("x"),
                envelope=Envelope("a@example.org", (Recipient("b@example.test"),)))
    replies = asyncio.run(proc.handle(task, Listener(10024, "ESMTP", "")))
    assert replies == ["451 4.5.0 Error in processing, id=00001-01"]
    assert "parser exploded" in caplog.text and "Traceback" in caplog.text


def test_killed_worker_is_replaced(tmp_path: Path, sink: Sink):
    proc, port = start_filter(tmp_path, sink.port, workers=2)
    try:
        children = _wait_children(proc.proc.pid, 2)
        assert len(children) == 2
        os.kill(children[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = _children(proc.proc.pid)
            if len(now) == 2 and children[0] not in now:
                break
            time.sleep(0.1)
        assert len(_children(proc.proc.pid)) == 2
        for i in range(4):
            s = smtp(port)
            assert s.sendmail("a@example.org", ["b@example.test"], message(f"after {i}")) == {}
            s.quit()
    finally:
        proc.stop()


def test_workers_die_with_a_killed_master(tmp_path: Path, sink: Sink):
    proc, port = start_filter(tmp_path, sink.port, workers=2)
    children = _wait_children(proc.proc.pid, 2)
    proc.kill_master()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.05)
    assert not any(_alive(c) for c in children)
    # the port is free again: a new filter can start at once, and stops promptly even
    # when told to while it is still forking its workers
    proc.start()
    started = time.monotonic()
    proc.stop()
    assert time.monotonic() - started < 10


def _wait_children(pid: int, n: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _children(pid)
        if len(found) >= n:
            return found
        time.sleep(0.05)
    return _children(pid)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(x) for x in out.split()]


@pytest.mark.parametrize("text,needle", [
    ("[server]\nworkerz = 1\n", "unknown key 'server.workerz'"),
    ("[server]\nworkers = 'x'\n", "'server.workers' must be an integer"),
    ("[reinject]\nprotocol = 'uucp'\n", "'reinject.protocol' = 'uucp' is not allowed"),
    ("[[listeners]]\nport = 99999\n", "'listeners[0].port' = 99999 is too large"),
    ("[server]\nxforward_hosts = ['nonsense']\n",
     "'server.xforward_hosts[0]' = 'nonsense' is not an IP network"),
    ("[policy]\nmynetworks = ['10.0.0.0/8', '300.1.1.1/8']\n",
     "'policy.mynetworks[1]' = '300.1.1.1/8' is not an IP network"),
    ("[server]\nmessage_timeout = inf\n", "'server.message_timeout' must be a finite number"),
    ("[policy]\ntag2_level = nan\n", "'policy.tag2_level' must be a finite number"),
    ("[reinject]\nhost = ''\n", "'reinject.host' is empty"),
    ("[server\n", "not valid TOML"),
    ("[reinject]\nport = 10024\n", "mail loop"),
    # a typo here used to mean "not quarantined": discarded mail would be gone
    ('[policy]\nquarantine = ["virus", "spamm"]\n', "'policy.quarantine[1]' = 'spamm'"),
    ('[policy_banks.X]\nquarantine = ["Spam"]\n', "'policy_banks.\"X\".quarantine[0]'"),
    # address patterns without an @ never match: the setting would do nothing
    ('[policy.recipients."example.com"]\nspam_lover = true\n',
     "'policy.recipients.\"example.com\"': 'example.com' is not an address pattern"),
    ('[policy]\nallow_senders = ["<>", "example.org"]\n',
     "'policy.allow_senders[1]' = 'example.org' never matches; write '@example.org'"),
    ('[policy.recipients."@x.org"]\nblock_senders = ["spam.test"]\n',
     "'policy.recipients.\"@x.org\".block_senders[0]' = 'spam.test' never matches"),
    # amavis's file-name form: delivered to, refused, every held message deferred
    ('[policy]\nquarantine_to = "virus-quarantine"\n',
     "'policy.quarantine_to' = 'virus-quarantine' is not an address"),
    ('[policy.recipients."@x.org"]\nquarantine_to = "q@"\n',
     "'policy.recipients.\"@x.org\".quarantine_to' = 'q@' is not an address"),
    ('[policy]\narchive_to = "archive"\n',
     "'policy.archive_to' = 'archive' is not an address"),
    ('[policy]\narchive_to = "/var/lib/scanner/archive"\n',
     "archive_directory writes them to files"),
    # the quarantine's expiry would remove archive files (no index row) from below it
    ('[policy]\narchive_directory = "archive"\n',
     "'policy.archive_directory' = 'archive': write an absolute path"),
    ('[quarantine]\ndirectory = "/srv/q"\n[policy.recipients."@x.org"]\n'
     'archive_directory = "/srv/q/archive/"\n',
     "'policy.recipients.\"@x.org\".archive_directory' = '/srv/q/archive/' overlaps "
     "'quarantine.directory' ('/srv/q')"),
    ('[policy_banks.B]\narchive_directory = "/var/lib/scanner/quarantine"\n',
     "overlaps 'quarantine.directory'"),
    # a misspelt listener bank gave that listener's mail the inbound policy, silently
    ('[[listeners]]\npolicy_bank = "ORIGINATNG"\n',
     "'listeners[0].policy_bank' = 'ORIGINATNG' names no policy bank; use one of "
     "['ORIGINATING'] or define [policy_banks.ORIGINATNG]"),
    ('[[listeners]]\npolicy_bank = "Originating"\n',
     "bank names are case-sensitive; write 'ORIGINATING'"),
    ('[[listeners]]\n[[listeners]]\nport = 10026\npolicy_bank = "SUBMISION"\n'
     '[policy_banks.SUBMISSION]\n',
     "'listeners[1].policy_bank' = 'SUBMISION' names no policy bank; use one of "
     "['ORIGINATING', 'SUBMISSION']"),
])
def test_config_errors_name_file_and_key(text: str, needle: str):
    with pytest.raises(ConfigError) as err:
        loads(text, "/etc/scanner/x.toml")
    assert str(err.value).startswith("/etc/scanner/x.toml: ")
    assert needle in str(err.value)


def test_listener_banks_that_exist_are_accepted():
    config = loads('[[listeners]]\npolicy_bank = "ORIGINATING"\n[[listeners]]\nport = 10026\n'
                   'policy_bank = "SUBMISSION"\n[policy_banks.SUBMISSION]\n'
                   '[[listeners]]\nport = 10027\n')
    assert [lst.policy_bank for lst in config.listeners] == ["ORIGINATING", "SUBMISSION", ""]


def test_cli_reports_config_error_and_exits_2(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[checks.settings.no_such_check]\nx = 1\n")
    for args in (["config", "check", str(bad)], ["serve", "--config", str(bad)]):
        run = subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 2
        assert f"{bad}: checks.settings.no_such_check: no check named 'no_such_check'" \
            in run.stderr
    missing = subprocess.run([sys.executable, "-m", "scanner", "config", "check",
                              str(tmp_path / "nope.toml")], capture_output=True, text=True)
    assert missing.returncode == 2 and "nope.toml: cannot read" in missing.stderr


@pytest.mark.parametrize(("text", "needle"), [
    ('enabled = ["*", "dnsbll"]', "checks.enabled[1]: no check named 'dnsbll' is installed"),
    ('disabled = ["clamav", "bayse"]', "checks.disabled[1]: 'bayse' names no installed check"),
    ('disabled = ["dns*", "zz*"]', "checks.disabled[1]: 'zz*' names no installed check"),
])
def test_check_names_that_match_no_installed_check_stop_start_up(tmp_path: Path, text: str,
                                                                  needle: str):
    # a typo in 'disabled' used to leave the check running without a word
    bad = tmp_path / "typo.toml"
    bad.write_text(f"[checks]\n{text}\n")
    run = subprocess.run([sys.executable, "-m", "scanner", "config", "check", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and f"{bad}: {needle}" in run.stderr
    assert "installed: auth, banned, bayes, clamav" in run.stderr


def test_config_check_reads_the_score_files_as_serve_does(tmp_path: Path):
    scores = tmp_path / "local-scores.toml"
    scores.write_text("[symbols.SC_LOCAL]\nweight = nan\n")
    config = tmp_path / "scanner.toml"
    config.write_text(f'[checks]\nscore_files = ["{scores}"]\n')
    for args in (["config", "check", str(config)], ["serve", "--config", str(config)]):
        run = subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 2, run.stderr
        assert f"{scores}: 'symbols.SC_LOCAL.weight' must be a finite number" in run.stderr


@pytest.mark.parametrize("setting,needle", [
    ('tmp_dir = "{missing}"', "'server.tmp_dir' {missing}: not a directory"),
    ('log_file = "{missing}/scanner.log"',
     "'server.log_file' {missing}/scanner.log: cannot open it: No such file or directory"),
    ('pid_file = "{missing}/scanner.pid"',
     "'server.pid_file' {missing}/scanner.pid: cannot write it: No such file or directory"),
])
def test_serve_names_an_unusable_file_or_directory_setting(tmp_path: Path, setting: str,
                                                           needle: str):
    """A path in [server] that cannot be used stops start-up with the key and the reason
    (log_file and pid_file ended in a traceback, tmp_dir was found only by the first
    big message)."""
    missing = tmp_path / "missing"
    config = tmp_path / "scanner.toml"
    config.write_text(f"[server]\n{setting.format(missing=missing)}\n[[listeners]]\n"
                      f"port = {free_port()}\n[quarantine]\ndirectory = \"{tmp_path}/q\"\n"
                      'ampdp_socket = ""\n')
    run = subprocess.run([sys.executable, "-m", "scanner", "serve", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert f"{config}: {needle.format(missing=missing)}" in run.stderr
    assert "Traceback" not in run.stderr


def test_serve_stops_at_an_archive_directory_it_cannot_create(tmp_path: Path):
    """Found at start, not by every message it would defer (451) while running."""
    (tmp_path / "a-file").write_text("")
    config = tmp_path / "scanner.toml"
    config.write_text(f"[[listeners]]\nport = {free_port()}\n[quarantine]\n"
                      f"directory = \"{tmp_path}/q\"\nampdp_socket = \"\"\n"
                      f"[policy_banks.B]\narchive_directory = \"{tmp_path}/a-file/archive\"\n")
    run = subprocess.run([sys.executable, "-m", "scanner", "serve", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert (f"{config}: 'policy_banks.\"B\".archive_directory' {tmp_path}/a-file/archive: "
            "cannot create it: Not a directory") in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_stop_says_421_to_idle_sessions_and_lets_a_transaction_finish(tmp_path: Path,
                                                                       sink: Sink):
    """SIGTERM: a session outside a transaction gets 421 at once; one whose message is
    being scanned gets its 250 (after the next hop took the message), then 421; the
    filter exits without waiting for server.message_timeout (20 s here)."""
    extra = FAULT.format(mode="sleep") + "seconds = 2\n"
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    idle = smtp(port)
    busy = socket.create_connection(("127.0.0.1", port), timeout=30)
    busy.recv(512)
    body = message("slow", extra="X-Scanner-Fault: yes\r\n")
    busy.sendall(b"EHLO postfix.test\r\nMAIL FROM:<a@example.org>\r\n"
                 b"RCPT TO:<b@example.test>\r\nDATA\r\n")
    time.sleep(0.5)
    busy.sendall(body + b"\r\n.\r\n")
    time.sleep(0.5)  # the message is in the fault check's 2 s sleep now
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    assert idle.sock.recv(512).startswith(b"421 4.3.2")  # type: ignore[union-attr]
    replies = b""
    while b"\r\n421 " not in replies and not replies.startswith(b"421 "):
        chunk = busy.recv(4096)
        if not chunk:
            break
        replies += chunk
    assert b"250 2.0.0 from MTA(smtp:[127.0.0.1]:" in replies, replies
    assert b"421 4.3.2" in replies
    proc.proc.wait(15)
    assert time.monotonic() - started < 10
    assert len(sink.received) == 1
    busy.close()


def test_config_show_round_trips(tmp_path: Path):
    run = subprocess.run([sys.executable, "-m", "scanner", "config", "show"],
                         capture_output=True, text=True, timeout=60, check=True)
    shown = tmp_path / "shown.toml"
    shown.write_text(run.stdout)
    assert load(str(shown)).server == load(None).server
    assert load(str(shown)).listeners == load(None).listeners


def test_config_show_fills_in_the_enabled_checks_settings(tmp_path: Path):
    """`config show` is a complete template: every enabled check's table with defaults
    (DNSBL's per-code inline tables quoted so TOML reads them back), the checks left off
    named in a comment, and the output reads back to the same configuration."""
    given = tmp_path / "given.toml"
    given.write_text('[checks]\nenabled = ["*", "dnsbl"]\n'
                     '[checks.settings.clamav]\ntimeout = 30.0\n'
                     '[checks.settings.uribl]\nlists = []\n'
                     '[policy]\nsubject_tag2 = "[SPAM \\"x\\"]\\t"\n')
    run = subprocess.run([sys.executable, "-m", "scanner", "config", "show", str(given)],
                         capture_output=True, text=True, timeout=60, check=True)
    assert "# installed checks this configuration leaves off: fault_injection, penpals, uribl" \
        in run.stdout
    shown = tmp_path / "shown.toml"
    shown.write_text(run.stdout)
    again = load(str(shown))
    settings = again.checks.settings
    assert settings["clamav"]["timeout"] == 30.0
    assert settings["clamav"]["endpoints"] == ["unix:/var/run/clamav/clamd.ctl"]
    assert settings["bayes"] == {
        "model": "", "reload_interval": 5.0, "autolearn": False,
        "autolearn_spam_above": 8.0, "autolearn_min_header_points": 0.0,
        "autolearn_min_body_points": 0.0, "autolearn_ham": False, "autolearn_ham_below": 0.1,
        "autolearn_interval": 60.0, "autolearn_spool": ""}
    assert settings["dnsbl"]["lists"][0]["codes"]["127.0.0.2"] == "RCVD_IN_SBL"
    assert settings["uribl"] == {"lists": []}  # off: as written
    assert again.policy == load(str(given)).policy
    subprocess.run([sys.executable, "-m", "scanner", "config", "check", str(shown)],
                   capture_output=True, timeout=60, check=True)


@pytest.mark.parametrize("lmtp", [False, True])
def test_an_exception_escaping_the_data_handler_is_a_451_per_recipient(lmtp: bool):
    """aiosmtpd answers an exception from a hook with '500 Error: (...)': after DATA
    that makes Postfix bounce the message (it may even have been delivered). Our
    listener (here as the test sink) answers 451, one reply per LMTP recipient."""
    def broken(rcpt: str) -> str:
        raise RuntimeError("handler exploded")

    listener = Sink(free_port(), lmtp=lmtp).start()
    listener.behaviour.data_reply = broken
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=30) as conn:
            f = conn.makefile("rb")
            f.readline()
            conn.sendall(b"LHLO t\r\n" if lmtp else b"EHLO t\r\n")
            while f.readline()[3:4] == b"-":
                pass
            conn.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n"
                         b"RCPT TO:<c@example.test>\r\nDATA\r\n")
            assert [f.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
            conn.sendall(message("x") + b".\r\n")
            replies = [f.readline() for _ in range(2 if lmtp else 1)]
            conn.sendall(b"NOOP\r\n")
            assert f.readline().startswith(b"250")  # the session goes on
            conn.sendall(b"QUIT\r\n")  # and ends before the listener stops
            assert f.readline().startswith(b"221")
    finally:
        listener.stop()
    assert all(r.startswith(b"451 4.3.0 ") for r in replies), replies


@pytest.mark.parametrize("how", ["half-close", "close"])
def test_a_client_gone_during_the_scan_gets_nothing_relayed(tmp_path: Path, sink: Sink,
                                                           how: str):
    """The end of the client's input while its message is scanned ends the transaction
    unanswered and nothing is relayed, even after a mere half-close (SHUT_WR): it cannot
    be told from Postfix's smtp process going away (killed, or its own timeout), and
    then relaying would only duplicate the retry. A client must keep sending open
    until it has the reply (Postfix does)."""
    extra = FAULT.format(mode="sleep") + "seconds = 2\n"
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    try:
        with at_data(port) as (conn, f):
            conn.sendall(message("gone", extra="X-Scanner-Fault: yes\r\n") + b".\r\n")
            time.sleep(0.5)  # in the fault check's 2 s sleep now
            conn.shutdown(socket.SHUT_WR if how == "half-close" else socket.SHUT_RDWR)
            if how == "half-close":
                assert f.readline() == b""  # no reply: the filter closed the connection
        time.sleep(2.5)  # the scan would have ended and the message been relayed
        assert sink.received == []
        s = smtp(port)  # the worker goes on
        assert s.sendmail("a@example.org", ["b@example.test"], message("after")) == {}
        s.quit()
    finally:
        proc.stop()
    assert len(sink.received) == 1

"""Logging set-up: the decoder libraries' own chatter stays out of the mail log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from decoders import Limits, unpack
from decoders.registry import LIBRARY_LOGGERS
from scanner.config.model import ServerConfig
from scanner.serve.logs import setup_logging
from tests.decoders.builders import message

TNEF = Path("/usr/share/clamav-testfiles/clam.tnef")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in (*LIBRARY_LOGGERS, "mail.log")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler not in handlers:
            handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def _damaged_tnef() -> bytes:
    if not TNEF.is_file():
        pytest.skip("clamav-testfiles not installed (apt-get install clamav-testfiles)")
    data = bytearray(TNEF.read_bytes())
    for pos in range(40, len(data), 97):  # damage the attribute blocks, keep the signature
        data[pos] ^= 0x5A
    return bytes(data)


@pytest.mark.parametrize("level, silent", [("info", True), ("warning", True), ("debug", False)])
def test_decoder_library_lines_only_at_debug(restore_logging: None, tmp_path: Path,
                                             level: str, silent: bool) -> None:
    log = tmp_path / "scanner.log"
    setup_logging(ServerConfig(log_level=level, log_file=str(log)), "mx.example.org")
    with unpack(message(("winmail.dat", _damaged_tnef())),
                limits=Limits(max_depth=6, max_parts=40, time_budget=5.0)) as result:
        assert result.parts  # decoded or marked, never a crash
    logging.getLogger("scanner").warning("after the decoding")  # our own lines still flow
    for handler in logging.getLogger().handlers:
        handler.flush()
    lines = log.read_text().splitlines()
    assert lines[-1].endswith("after the decoding")
    if silent:
        assert lines == lines[-1:]
    else:  # the same file makes tnefparse talk: the silent case above is not vacuous
        assert len(lines) > 1


def _flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def test_the_log_file_is_reopened_after_logrotate_moves_it(restore_logging: None,
                                                          tmp_path: Path) -> None:
    log = tmp_path / "scanner.log"
    setup_logging(ServerConfig(log_file=str(log)), "mx.example.org")
    logging.getLogger("scanner").info("before rotation")
    _flush()
    log.rename(tmp_path / "scanner.log.1")
    logging.getLogger("scanner").info("after rotation")
    _flush()
    assert "before rotation" in (tmp_path / "scanner.log.1").read_text()
    assert "after rotation" not in (tmp_path / "scanner.log.1").read_text()
    assert "after rotation" in log.read_text()


def test_syslog_without_a_socket_is_one_warning_not_a_traceback_per_line(
        restore_logging: None, tmp_path: Path, monkeypatch, capsys) -> None:
    import scanner.serve.logs as logs

    monkeypatch.setattr(logs, "SYSLOG_SOCKET", str(tmp_path / "no-dev-log"))
    setup_logging(ServerConfig(syslog=True), "mx.example.org")
    for n in range(5):
        logging.getLogger("scanner").info("line %d", n)
    err = capsys.readouterr().err
    assert err.count("syslog unavailable") == 1 and "No such file or directory" in err
    assert "Traceback" not in err and "Logging error" not in err
    assert err.count("scanner[") == 6  # the warning and the five lines, on standard error


def test_syslog_that_goes_away_is_said_once_and_used_again_when_back(
        restore_logging: None, tmp_path: Path, monkeypatch, capsys) -> None:
    """The syslog daemon stops while the filter runs: every line printed a "Logging
    error" traceback to standard error; now one line says so, and when the daemon is
    back the lines go there again with a count of those lost."""
    import socket

    import scanner.serve.logs as logs

    path = str(tmp_path / "dev-log")
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    daemon.bind(path)
    monkeypatch.setattr(logs, "SYSLOG_SOCKET", path)
    setup_logging(ServerConfig(syslog=True), "mx.example.org")
    log = logging.getLogger("scanner")
    log.info("first")
    assert b"first" in daemon.recv(4096)
    daemon.close()
    Path(path).unlink()
    for n in range(5):
        log.info("lost %d", n)
    err = capsys.readouterr().err
    assert err.count(f"cannot write to syslog ({path})") == 1, err
    assert "Traceback" not in err and "Logging error" not in err
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # the daemon restarted
    daemon.bind(path)
    daemon.settimeout(5)
    log.info("back")
    got = [daemon.recv(4096), daemon.recv(4096)]
    daemon.close()
    assert b"back" in got[0] and b"5 log line(s) could not be written to syslog" in got[1]


def test_under_systemd_standard_error_lines_leave_time_and_host_to_the_journal(
        restore_logging: None, monkeypatch, capsys) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    setup_logging(ServerConfig(), "mx.example.org")
    logging.getLogger("scanner").info("to the journal")
    assert capsys.readouterr().err.startswith("scanner[")
    monkeypatch.delenv("JOURNAL_STREAM")
    setup_logging(ServerConfig(), "mx.example.org")
    logging.getLogger("scanner").info("to a terminal")
    assert " mx scanner[" in capsys.readouterr().err


def test_a_line_with_bytes_that_are_not_utf8_is_written_with_them_escaped(
        restore_logging: None, tmp_path: Path) -> None:
    """An SMTP address in Latin-1 (aiosmtpd keeps the byte as a surrogate escape) made
    the UTF-8 log file refuse the whole summary line; UTF-8 text stays as it is."""
    log = tmp_path / "scanner.log"
    setup_logging(ServerConfig(log_file=str(log)), "mx.example.org")
    logging.getLogger("scanner").info("Passed CLEAN <j\udcfcrgen@example.org> -> "
                                      "<δοκιμή@пример.рф>, mail_id: x")
    _flush()
    text = log.read_text(encoding="utf-8")
    assert "Passed CLEAN <j\\xfcrgen@example.org> -> <δοκιμή@пример.рф>, mail_id: x" in text


def test_a_long_line_lost_in_syslog_pieces_counts_as_one_line(
        restore_logging: None, tmp_path: Path, monkeypatch) -> None:
    """A line past 980 octets goes to syslog in pieces; lost, it is one lost line, not
    one per piece (it counted 4 for a 3,000-character line)."""
    import socket

    import scanner.serve.logs as logs

    path = str(tmp_path / "dev-log")
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    daemon.bind(path)
    monkeypatch.setattr(logs, "SYSLOG_SOCKET", path)
    setup_logging(ServerConfig(syslog=True), "mx.example.org")
    log = logging.getLogger("scanner")
    log.info("first")
    assert b"first" in daemon.recv(4096)
    daemon.close()
    Path(path).unlink()
    log.info("(1234-01) %s", "x" * 3000)  # four pieces
    log.info("short")
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    daemon.bind(path)
    daemon.settimeout(5)
    log.info("back")
    got = [daemon.recv(4096), daemon.recv(4096)]
    daemon.close()
    assert b"back" in got[0] and b" 2 log line(s) could not be written to syslog" in got[1]

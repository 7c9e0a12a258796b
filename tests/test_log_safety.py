"""What a sender chose cannot forge a log line or lose one: every line is escaped as
amavis's ``do_log`` does, a traceback's lines are indented, a long line reaches syslog in
amavis's 980-octet pieces, and the summary line's Message-ID is amavis's first ``<...>``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.config.model import ServerConfig
from scanner.serve.logs import LOGLINE_MAXLEN, setup_logging, syslog_pieces
from scanner.testing.sink import Sink
from tests.helpers import message, start_filter
from tests.test_logs import restore_logging  # noqa: F401 (a fixture)

# Every character Python's str.splitlines() (and so many log readers) ends a line at,
# NUL, ESC, a right-to-left override, and a byte that was not UTF-8 (surrogateescape)
HOSTILE = "a\r\nb\x0bc\x0cd\x1ce\x85f\u2028g\u2029h\x00i\x1b[2Jj\u202ek\udce9l"
ESCAPED = ("a\\x0d\\x0ab\\x0bc\\x0cd\\x1ce\\x85f\\u2028g\\u2029h\\x00i\\x1b[2Jj\\u202ek"
           "\\xe9l")
FORGED = "Dec  6 12:00:00 mx scanner[1]: (00001-01) Passed CLEAN {RelayedInbound}"


def _flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def test_a_hostile_value_stays_on_its_line_escaped(restore_logging: None,  # noqa: F811
                                                   tmp_path: Path) -> None:
    log = tmp_path / "scanner.log"
    setup_logging(ServerConfig(log_file=str(log)), "mx.example.org")
    logging.getLogger("scanner").info("(00002-01) sender <%s>", HOSTILE + "\n" + FORGED)
    _flush()
    [line] = log.read_text("utf-8").splitlines()  # strict UTF-8: nothing undecodable
    assert line.endswith(f"(00002-01) sender <{ESCAPED}\\x0a{FORGED}>")


def test_a_traceback_keeps_its_lines_but_none_reads_as_a_log_line(
        restore_logging: None, tmp_path: Path) -> None:  # noqa: F811
    log = tmp_path / "scanner.log"
    setup_logging(ServerConfig(log_file=str(log)), "mx.example.org")
    try:
        raise ValueError(f"bad header\n{FORGED}\r")
    except ValueError:
        logging.getLogger("scanner").exception("(00003-01) check failed")
    _flush()
    first, *rest = log.read_text("utf-8").split("\n")[:-1]
    assert first.endswith("(00003-01) check failed")
    assert rest[0] == "\tTraceback (most recent call last):"
    assert all(ln.startswith("\t") for ln in rest), rest
    assert rest[-2:] == ["\tValueError: bad header", f"\t{FORGED}\\x0d"]


@pytest.fixture
def syslog_daemon(tmp_path: Path, monkeypatch) -> Iterator[queue.Queue[bytes]]:
    """A syslog socket read as a daemon reads it, by a thread of its own (a sender
    blocks once ten datagrams wait: net.unix.max_dgram_qlen); the datagrams."""
    import scanner.serve.logs as logs

    path = str(tmp_path / "dev-log")
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    daemon.bind(path)
    got: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        with contextlib.suppress(OSError):
            while data := daemon.recv(65536):
                got.put(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    monkeypatch.setattr(logs, "SYSLOG_SOCKET", path)
    yield got
    daemon.shutdown(socket.SHUT_RDWR)
    daemon.close()
    reader.join(5)


def _payloads(daemon: queue.Queue[bytes], count: int) -> list[bytes]:
    """The messages after ``<PRI>scanner[PID]: `` of ``count`` datagrams."""
    got = [daemon.get(timeout=5) for _ in range(count)]
    assert daemon.empty()
    return [re.sub(rb"^<\d+>scanner\[\d+\]: ", b"", g).rstrip(b"\x00") for g in got]


def _logwatch_join(lines: list[bytes]) -> bytes:
    """Put amavis's continued lines together as logwatch's amavis script does: a line of
    exactly $logline_maxlen octets ending in ``...`` goes on in the next, which starts
    ``(log_id) ...``."""
    whole = b""
    for n, line in enumerate(lines):
        log_id, _, text = line.partition(b" ")
        if n:
            assert text.startswith(b"...")
            text = text[3:]
        if n < len(lines) - 1:
            assert len(line) == LOGLINE_MAXLEN and text.endswith(b"...")
            text = text[:-3]
        whole = whole + text if n else log_id + b" " + text
    return whole


def test_a_long_line_reaches_syslog_in_amavis_pieces(restore_logging: None,  # noqa: F811
                                                     syslog_daemon: queue.Queue[bytes]) -> None:
    """A summary line of 1,000 recipients: one datagram of 27 KB was cut by syslog
    (RFC 3164 1024 octets, rsyslog's 8k) before its mail_id, Hits and ms fields."""
    setup_logging(ServerConfig(syslog=True), "mx.example.org")
    rcpts = ",".join(f"<user{n:04d}@example.test>" for n in range(1000))
    line = (f"(04082-01) Passed CLEAN {{RelayedInbound}}, [192.0.2.7]:4567 [192.0.2.7] "
            f"<a@example.org> -> {rcpts}, Queue-ID: 4ABCDEF12, Message-ID: <x1@example.org>, "
            f"mail_id: mV33GzO2V63m, Hits: -, size: 1842, queued_as: 9F3A2C1B0, 14 ms")
    logging.getLogger("scanner").info("%s", line)
    count = len(syslog_pieces(line))
    assert count == -(-len(line) // (LOGLINE_MAXLEN - len("(04082-01) ...")))
    pieces = _payloads(syslog_daemon, count)
    assert all(p.startswith(b"(04082-01) ") and len(p) <= LOGLINE_MAXLEN for p in pieces)
    assert _logwatch_join(pieces) == line.encode()


def test_a_value_that_was_not_utf8_reaches_syslog(restore_logging: None,  # noqa: F811
                                                  syslog_daemon: queue.Queue[bytes]) -> None:
    """Python's SysLogHandler encodes strictly: the line was lost (``cannot write``)."""
    setup_logging(ServerConfig(syslog=True), "mx.example.org")
    logging.getLogger("scanner").info("(00004-01) <%s>", "b\udcf8b@example.test\u202e")
    [payload] = _payloads(syslog_daemon, 1)
    assert payload == b"(00004-01) <b\\xf8b@example.test\\u202e>"


def test_syslog_pieces_cut_between_characters() -> None:
    line = "(123-01) " + "é" * 1000
    pieces = syslog_pieces(line)
    assert all(len(p.encode()) <= LOGLINE_MAXLEN for p in pieces)
    assert "".join(p.removeprefix("(123-01) ").removeprefix("...").removesuffix("...")
                   for p in pieces) == "é" * 1000
    assert syslog_pieces("short") == ["short"]


def test_the_summary_line_through_the_filter(tmp_path: Path, sink: Sink) -> None:
    """A real ``scanner serve``: a Message-ID that brings its own fields, control
    characters and UTF-8, and a sender with an escape sequence and a byte that was not
    UTF-8. amavis logs the first ``<...>`` of the field (parse_message_id), raw UTF-8."""
    proc, port = start_filter(tmp_path, sink.port)
    msgid = ("<m1@example.org> (x), mail_id: FORGED, Hits: -99.000, size: 1, 1 ms\x0b"
             f"{FORGED}")
    raw = message("inject").replace(b"Message-ID: <inject@example.org>",
                                     b"Message-ID: " + msgid.encode())
    raw2 = message("utf8").replace(b"Message-ID: <utf8@example.org>",
                                   "Message-ID: <\u00fcber\u202e\x1b@example.org>".encode())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            f = conn.makefile("rb")
            f.readline()
            for mail_from, body in ((b'<"ev\x1b\x07il\xe9"@example.org>', raw),
                                    ("<a\u202eb@example.org> SMTPUTF8".encode(), raw2)):
                conn.sendall(b"EHLO t\r\nMAIL FROM:" + mail_from + b"\r\n"
                             b"RCPT TO:<b@example.test>\r\nDATA\r\n")
                while f.readline()[3:4] == b"-":  # EHLO's lines
                    pass
                assert [f.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
                conn.sendall(body + b"\r\n.\r\n")
                assert f.readline().startswith(b"250 "), "not relayed"
            conn.sendall(b"QUIT\r\n")
        sink.wait_for(2)
    finally:
        proc.stop()
    lines = proc.log_path.read_text("utf-8").splitlines()
    summaries = [ln for ln in lines if "mail_id: " in ln]
    assert len(summaries) == 2, summaries
    first, second = summaries
    assert "<ev\\x1b\\x07il\\xe9@example.org> -> <b@example.test>" in first
    assert ", Message-ID: <m1@example.org>, mail_id: " in first
    assert first.count("mail_id: ") == 1 and "FORGED" not in first
    assert "<a\\u202eb@example.org> -> " in second
    assert ", Message-ID: <\u00fcber\\u202e\\x1b@example.org>, mail_id: " in second
    assert not any(ln.startswith(FORGED[:6]) and "mail_id" in ln and "FORGED" in ln
                   for ln in lines)


def test_the_log_file_dates_its_lines_as_syslog_and_amavis_do(
        restore_logging: None, tmp_path: Path) -> None:  # noqa: F811
    """``Dec  6``, not ``Dec 06``: logwatch's date filter (``--range today``, its
    daily cron's ``yesterday``) skipped every line of days 1 to 9."""
    import time

    log = tmp_path / "scanner.log"
    setup_logging(ServerConfig(log_file=str(log)), "mx.example.org")
    [handler] = logging.getLogger().handlers
    record = logging.makeLogRecord({"msg": "(00005-01) Passed CLEAN", "levelno": 20,
                                    "created": time.mktime((2026, 12, 6, 9, 5, 7, 0, 0, -1))})
    handler.handle(record)  # its filter names the host
    _flush()
    assert log.read_text().startswith("Dec  6 09:05:07 mx scanner[")

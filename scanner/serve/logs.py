"""Logging set-up: one stream (stderr or a file) and optionally syslog (facility mail).

A log file is reopened when logrotate moves it away (``WatchedFileHandler``), so no
``copytruncate`` is needed. Writing a log line never fails the caller: a line that
cannot be written (disk full, a new file that cannot be created) is counted, said once
on standard error, and the count is logged when the file takes lines again. Under
systemd (``$JOURNAL_STREAM`` set) standard error lines carry no timestamp and host of
their own: the journal adds them.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import re
import socket
import sys

from decoders.registry import quiet_libraries
from scanner.config import ServerConfig
from scanner.errors import ConfigError

FORMAT = "%(asctime)s %(hostname)s scanner[%(process)d]: %(message)s"
JOURNAL_FORMAT = "scanner[%(process)d]: %(message)s"
SYSLOG_SOCKET = "/dev/log"
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Formatter(logging.Formatter):
    """Lines with the bytes of a client's text that are not UTF-8 (kept as surrogate
    escapes, as an SMTP address ``<j\\xfcrgen@...>`` in Latin-1) written as ``\\xfc``:
    the UTF-8 log file and syslog cannot take a surrogate, and the line (a message's
    summary line among them) was lost. Valid UTF-8 (an SMTPUTF8 address) stays as it
    is, as Postfix logs it."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if text.isascii():
            return text
        return _SURROGATE.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}"
                              if "\udc80" <= m.group() <= "\udcff"
                              else f"\\u{ord(m.group()):04x}", text)


class _HostFilter(logging.Filter):
    def __init__(self, hostname: str) -> None:
        super().__init__()
        self._hostname = hostname

    def filter(self, record: logging.LogRecord) -> bool:
        record.hostname = self._hostname
        return True


class _NeverRaises(logging.Handler):
    """A handler whose ``emit`` never raises: a line it cannot write is counted, said
    once on standard error (no traceback per line), and the count is logged when a
    line goes through again."""

    lost = 0
    target = "the log"

    def emit(self, record: logging.LogRecord) -> None:
        lost = self.lost
        try:
            super().emit(record)  # type: ignore[safe-super]
        except Exception:
            self.handleError(record)
        if lost and self.lost == lost:  # written again: say how many were not
            self.lost = 0
            note = logging.makeLogRecord({**record.__dict__, "levelno": logging.WARNING,
                                          "levelname": "WARNING", "args": (),
                                          "exc_info": None, "exc_text": None,
                                          "msg": f"{lost} log line(s) could not be written "
                                                 f"to {self.target}"})
            self.emit(note)

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.lost:
            exc = sys.exc_info()[1]
            reason = getattr(exc, "strerror", None) or exc
            with contextlib.suppress(Exception):
                sys.stderr.write(f"scanner: cannot write to {self.target}: {reason}; its "
                                 "lines are lost until it can\n")
                sys.stderr.flush()
        self.lost += 1


class LogFile(_NeverRaises, logging.handlers.WatchedFileHandler):
    """The log file: reopened when moved away, and (Python's reopens a moved file
    outside its error handling, so when the new file could not be created every log
    call raised, into the middle of a message) never raising."""

    def __init__(self, filename: str) -> None:
        super().__init__(filename, encoding="utf-8")
        self.target = f"the log file {self.baseFilename}"


class Syslog(_NeverRaises, logging.handlers.SysLogHandler):
    """Syslog (facility mail) that says once, not with a traceback per line, when its
    socket went away (syslog daemon stopped); it reconnects when the socket is back."""

    def __init__(self, path: str) -> None:
        super().__init__(path, facility=logging.handlers.SysLogHandler.LOG_MAIL)
        self.target = f"syslog ({path})"


def setup_logging(cfg: ServerConfig, hostname: str, source: str = "configuration") -> None:
    """Configure the root logger from the [server] section of the file ``source``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stream: logging.Handler
    journal = False
    if cfg.log_file:
        try:
            stream = LogFile(cfg.log_file)
        except OSError as exc:
            raise ConfigError(f"{source}: 'server.log_file' {cfg.log_file}: cannot open it: "
                              f"{exc.strerror}") from None
    else:
        stream = logging.StreamHandler(sys.stderr)
        journal = bool(os.environ.get("JOURNAL_STREAM"))
    stream.setFormatter(_Formatter(JOURNAL_FORMAT) if journal
                        else _Formatter(FORMAT, "%b %d %H:%M:%S"))
    stream.addFilter(_HostFilter(hostname.split(".")[0]))
    root.addHandler(stream)
    if cfg.syslog:
        problem = _syslog_problem(SYSLOG_SOCKET)
        if problem:
            logging.getLogger("scanner").warning(
                "syslog unavailable (%s: %s): logging to %s only", SYSLOG_SOCKET, problem,
                cfg.log_file or "standard error")
        else:
            sys_handler = Syslog(SYSLOG_SOCKET)
            sys_handler.setFormatter(_Formatter(JOURNAL_FORMAT))
            root.addHandler(sys_handler)
    root.setLevel(cfg.log_level.upper())
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's chatter
    quiet_libraries(root.level)  # the decoders' libraries: only at debug


def _syslog_problem(path: str) -> str:
    """Why syslog's socket cannot take messages ("" when it can). SysLogHandler itself
    does not fail when the socket is missing; it then prints a traceback per record."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        probe = socket.socket(socket.AF_UNIX, kind)
        try:
            probe.connect(path)
            return ""
        except OSError as exc:
            problem = exc.strerror or str(exc)
        finally:
            probe.close()
    return problem

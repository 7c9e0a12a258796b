"""Logging set-up: one stream (stderr or a file) and optionally syslog (facility mail).

A log file is reopened when logrotate moves it away (``WatchedFileHandler``), so no
``copytruncate`` is needed. Writing a log line never fails the caller: a line that
cannot be written (disk full, a new file that cannot be created) is counted, said once
on standard error, and the count is logged when the file takes lines again. Under
systemd (``$JOURNAL_STREAM`` set) standard error lines carry no timestamp and host of
their own: the journal adds them.

Every line is escaped as amavis's ``do_log`` does (``scanner.text.printable``): a CR,
LF or other control character that a sender put in an address, a Message-ID or a file
name cannot start a forged line, and bytes that were not UTF-8 cannot fail the write.
A traceback keeps its lines, each indented so that none reads as a line of its own.
Syslog gets amavis's ``$logline_maxlen`` (980) pieces, continued with ``...`` as amavis
writes them (``Amavis::Log::write_log``), which log parsers put back together.
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
from scanner.text import printable

FORMAT = "%(asctime)s %(hostname)s scanner[%(process)d]: %(message)s"
JOURNAL_FORMAT = "scanner[%(process)d]: %(message)s"
# syslog's (RFC 3164) and amavis's timestamp: the day padded with a space, "Dec  6";
# logwatch's date filter (its daily --range yesterday) matches only this
SYSLOG_TIME = "%b %e %H:%M:%S"
SYSLOG_SOCKET = "/dev/log"
LOGLINE_MAXLEN = 980  # amavis's $logline_maxlen: under syslog's 1024 with its prefix
_LOG_ID = re.compile(r"\([0-9A-Za-z.-]+\) ")


class SafeFormatter(logging.Formatter):
    """Each line escaped (``printable``); a traceback's lines each indented by a tab."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:
        return _indented(super().formatException(ei))  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("\t" + printable(line) for line in text.split("\n"))


def syslog_pieces(message: str, maxlen: int = LOGLINE_MAXLEN) -> list[str]:
    """``message`` in pieces of at most ``maxlen`` octets (UTF-8, cut between
    characters) as amavis sends a long line to syslog: ``(log_id) first part...``,
    ``(log_id) ...next part...``, ..., ``(log_id) ...last part``."""
    found = _LOG_ID.match(message)
    log_id = found.group() if found else ""
    rest = message[len(log_id):]
    pieces, pre = [], ""
    while len(log_id) + len(pre) + _octets(rest) > maxlen:
        avail = max(maxlen - len(log_id) - len(pre) - 3, 1)
        part = rest.encode("utf-8", "surrogatepass")[:avail].decode("utf-8", "ignore") \
            or rest[0]
        pieces.append(f"{log_id}{pre}{part}...")
        pre, rest = "...", rest[len(part):]
    return [*pieces, f"{log_id}{pre}{rest}"]


def _octets(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


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
        self.setFormatter(SafeFormatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """A long line as amavis's pieces of at most 980 characters, each one record
        after the ident ``scanner[PID]: ``. A piece that cannot be written loses the
        line: it counts once among the lost lines, and its later pieces are not sent
        (a parser could not join them to anything)."""
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.ident = f"scanner[{record.process}]: "
        for piece in syslog_pieces(text):
            lost = self.lost
            super().emit(logging.makeLogRecord({**record.__dict__, "msg": piece, "args": (),
                                                "exc_info": None, "exc_text": None,
                                                "stack_info": None}))
            if self.lost > lost:
                return


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
    stream.setFormatter(SafeFormatter(JOURNAL_FORMAT) if journal
                        else SafeFormatter(FORMAT, SYSLOG_TIME))
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
            root.addHandler(sys_handler)
    root.setLevel(cfg.log_level.upper())
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

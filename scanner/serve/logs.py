"""Logging set-up: one stream (stderr or a file) and optionally syslog (facility mail)."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from decoders.registry import quiet_libraries
from scanner.config import ServerConfig
from scanner.errors import ConfigError

FORMAT = "%(asctime)s %(hostname)s scanner[%(process)d]: %(message)s"


class _HostFilter(logging.Filter):
    def __init__(self, hostname: str) -> None:
        super().__init__()
        self._hostname = hostname

    def filter(self, record: logging.LogRecord) -> bool:
        record.hostname = self._hostname
        return True


def setup_logging(cfg: ServerConfig, hostname: str, source: str = "configuration") -> None:
    """Configure the root logger from the [server] section of the file ``source``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stream: logging.Handler
    if cfg.log_file:
        try:
            stream = logging.FileHandler(cfg.log_file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: 'server.log_file' {cfg.log_file}: cannot open it: "
                              f"{exc.strerror}") from None
    else:
        stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter(FORMAT, "%b %d %H:%M:%S"))
    stream.addFilter(_HostFilter(hostname.split(".")[0]))
    root.addHandler(stream)
    if cfg.syslog:
        try:
            sys_handler = logging.handlers.SysLogHandler(
                "/dev/log", facility=logging.handlers.SysLogHandler.LOG_MAIL)
            sys_handler.setFormatter(logging.Formatter("scanner[%(process)d]: %(message)s"))
            root.addHandler(sys_handler)
        except OSError as exc:
            logging.getLogger("scanner").warning("syslog unavailable: %s", exc)
    root.setLevel(cfg.log_level.upper())
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's chatter
    quiet_libraries(root.level)  # the decoders' libraries: only at debug

"""``scanner serve``: start the filter daemon (master + pre-forked workers)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket

from scanner import config as cfgmod
from scanner.checks.base import CheckContext
from scanner.registry import build_checks
from scanner.scores import load_scores
from scanner.serve.logs import setup_logging
from scanner.serve.master import Master, bind_listeners


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the content filter daemon")
    p.add_argument("--config", "-c", help=f"TOML file (default: ${cfgmod.ENV_VAR} or "
                   f"{cfgmod.DEFAULT_PATH} if present, else shipped defaults)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = cfgmod.load(cfgmod.resolve_path(args.config))
    hostname = config.server.hostname or socket.getfqdn()
    setup_logging(config.server, hostname)
    _preflight(config)
    sockets = bind_listeners(config)
    if config.server.pid_file:
        with open(config.server.pid_file, "w", encoding="ascii") as fh:
            fh.write(f"{os.getpid()}\n")
    workers = config.server.workers or os.cpu_count() or 1
    try:
        return Master(config, sockets, hostname, workers).run()
    finally:
        if config.server.pid_file:
            with contextlib.suppress(OSError):
                os.unlink(config.server.pid_file)


def _preflight(config: cfgmod.Config) -> None:
    """Build the checks once in the master so a bad check setting stops start-up here."""
    async def no_cpu(*_args: object) -> None:
        return None

    checks = build_checks(config, CheckContext(config=config, run_cpu=no_cpu))
    load_scores()
    logging.getLogger("scanner").info(
        "scanner starting (config %s), checks: %s", config.source,
        ", ".join(c.name for c in checks) or "none")

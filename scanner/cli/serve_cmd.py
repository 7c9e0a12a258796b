"""``scanner serve``: start the filter daemon (master + pre-forked workers)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import socket

from scanner import config as cfgmod
from scanner.checks.base import LastGood
from scanner.cli.config_cmd import policy_source_problems, preflight, probe_checks
from scanner.errors import ConfigError
from scanner.hostname import configured_hostname
from scanner.quarantine.ampdp import bind_ampdp_inet, bind_ampdp_socket, unlink_ampdp_socket
from scanner.quarantine.record import QuarantineError
from scanner.scores import ScoreTable
from scanner.serve.logs import setup_logging
from scanner.serve.master import Master, bind_listeners, listener_files, unlink_listeners
from scanner.serve.scoreboard import Scoreboard, StatusFileError
from scanner.serve.watch import FileWatch


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the content filter daemon")
    p.add_argument("--config", "-c", help=f"TOML file (default: ${cfgmod.ENV_VAR} or "
                   f"{cfgmod.DEFAULT_PATH} if present, else shipped defaults)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # A reload asked for while we start (``systemctl reload`` right after a start, clamd
    # slow to answer the start-up probe) must not kill us, SIGHUP's default: the
    # workers, forked later, read the checks' files then anyway. The master installs
    # its own handler when it runs.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    config = cfgmod.load(cfgmod.resolve_path(args.config))
    hostname = configured_hostname(config.server.hostname)
    setup_logging(config.server, hostname, config.source)
    last_good = LastGood()  # what the checks loaded now, for every worker forked later
    scores, watch = _preflight(config, last_good)
    _check_tmp_dir(config)
    _make_archive_directories(config)
    sockets = bind_listeners(config)
    files = listener_files(sockets)
    try:
        return _serve(config, sockets, hostname, last_good, scores, watch)
    finally:
        unlink_listeners(files)


def _serve(config: cfgmod.Config, sockets: list, hostname: str, last_good: LastGood,
           scores: ScoreTable, watch: FileWatch | None) -> int:
    workers = _workers(config)
    pid_fd = _write_pid_file(config) if config.server.pid_file else -1
    try:
        board = _scoreboard(config, workers)
        ampdp = _bind_ampdp(config)
        try:
            return Master(config, sockets, hostname, workers, ampdp, board,
                          last_good, scores, watch).run()
        finally:
            board.close()
            for sock in ampdp:
                if sock.family == socket.AF_UNIX:
                    unlink_ampdp_socket(sock)
                sock.close()
    finally:
        if pid_fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(config.server.pid_file)
            os.close(pid_fd)


def _check_tmp_dir(config: cfgmod.Config) -> None:
    """``server.tmp_dir`` must be a directory we can write (big parts are spooled there)."""
    path = config.server.tmp_dir
    if path and not (os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)):
        reason = "not a directory" if not os.path.isdir(path) else "not writable"
        raise ConfigError(f"{config.source}: 'server.tmp_dir' {path}: {reason}; create it "
                          "for the user running scanner serve, or set it to \"\" for the "
                          "system default")


def _make_archive_directories(config: cfgmod.Config) -> None:
    """Create the ``archive_directory`` of every policy table now: one we cannot create
    stops the start, rather than deferring every message it archives."""
    for where, table in cfgmod.policy_tables(config):
        path = getattr(table, "archive_directory", None)
        if not path:
            continue
        try:
            os.makedirs(path, mode=0o750, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{config.source}: '{where}.archive_directory' {path}: "
                              f"cannot create it: {exc.strerror}") from None


def _write_pid_file(config: cfgmod.Config) -> int:
    """Write the master's pid into ``server.pid_file`` and keep the file locked while
    scanner runs (the descriptor returned). A second ``scanner serve`` with the same pid
    file (say, a copy of the configuration with another port) stops here, naming the
    running one, instead of writing its pid over the running one's and removing the
    file when it stopped later on."""
    path = config.server.pid_file
    where = f"{config.source}: 'server.pid_file' {path}"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot write it: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise ConfigError(f"{where}: another scanner serve (pid {holder}) is using it; "
                          "give this one a pid file of its own") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError as exc:
        os.close(fd)
        raise ConfigError(f"{where}: cannot write it: {exc.strerror}") from None
    return fd


def _workers(config: cfgmod.Config) -> int:
    """``server.workers`` (0: one per core), at most ``server.concurrency``: every worker
    serves its share of the connections, and a share cannot be empty."""
    workers = config.server.workers or os.cpu_count() or 1
    if workers > config.server.concurrency:
        logging.getLogger("scanner").info(
            "starting %d worker(s), not %d: server.concurrency is %d and every worker "
            "takes a share of it", config.server.concurrency, workers,
            config.server.concurrency)
        workers = config.server.concurrency
    return workers


def _bind_ampdp(config: cfgmod.Config) -> list[socket.socket]:
    """Prepare the quarantine directory and bind the AM.PDP sockets that are configured
    (the Unix socket, and TCP for release requests)."""
    q = config.quarantine
    try:
        os.makedirs(q.directory, mode=0o750, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{config.source}: 'quarantine.directory' {q.directory}: cannot "
                          f"create it: {exc.strerror}") from None
    bound: list[socket.socket] = []
    if q.ampdp_socket:
        try:
            bound.append(bind_ampdp_socket(q))
        except (OSError, QuarantineError) as exc:
            raise ConfigError(f"{config.source}: 'quarantine.ampdp_socket' {q.ampdp_socket}:"
                              f" {exc}; set it to \"\" to run without AM.PDP") from None
    if q.ampdp_inet:
        try:
            bound.append(bind_ampdp_inet(q))
        except OSError as exc:
            for sock in bound:
                unlink_ampdp_socket(sock)
                sock.close()
            raise ConfigError(f"{config.source}: 'quarantine.ampdp_inet' {q.ampdp_inet}: "
                              f"cannot listen: {exc.strerror}; set it to \"\" to serve "
                              "AM.PDP on the Unix socket only") from None
    return bound


def _scoreboard(config: cfgmod.Config, workers: int) -> Scoreboard:
    """The workers' shared scoreboard, in ``server.status_file`` when one is set."""
    path = config.server.status_file
    try:
        return Scoreboard(workers, path)
    except StatusFileError as exc:
        raise ConfigError(f"{config.source}: 'server.status_file' {path}: {exc.strerror}; "
                          f"set it to \"\" to run without a status file") from None


def _preflight(config: cfgmod.Config, last_good: LastGood) -> tuple[ScoreTable, FileWatch]:
    """Build the checks once in the master so a bad check setting stops start-up here;
    the score table, read now for every worker forked later, and the watch of the files
    the checks read (a change is reloaded as on SIGHUP)."""
    checks, scores = preflight(config, last_good)
    watch = FileWatch.of_checks(checks)
    log = logging.getLogger("scanner")
    log.info("scanner starting (config %s), checks: %s", config.source,
             ", ".join(c.name for c in checks) or "none")
    for problem in probe_checks(checks) + policy_source_problems(config, every_row=False):
        log.warning("%s", problem)
    return scores, watch

"""The pre-forking master: bind the listeners, fork workers, restart the ones that die.

Workers inherit the listening sockets and the kernel spreads new connections among
them. A worker dies with its master (PR_SET_PDEATHSIG), so a killed master never
leaves orphans holding the ports. SIGTERM/SIGINT: the listening sockets are closed (new
connections are refused), workers finish open transactions and exit; SIGHUP is passed
on to the workers (reload hooks), and so is a change of a file the checks asked to
have watched (the model, :mod:`scanner.serve.watch`).

Watchdog: every worker has a slot on the shared scoreboard
(:mod:`scanner.serve.scoreboard`) and beats there once a second from its event loop.
A worker silent for ``server.watchdog_timeout`` seconds (its loop is stuck: a runaway
computation, a library call that never returns) is killed with SIGKILL and replaced;
its open transactions never got a reply, so Postfix retries them. The watchdog also
runs while the filter stops (a stopping worker beats while it lets its transactions
finish): a worker stuck then would otherwise keep the master from ever exiting.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence
from typing import NoReturn

from scanner.checks.base import LastGood
from scanner.config import Config, ListenerConfig, load
from scanner.errors import ConfigError
from scanner.registry import close_checks
from scanner.scores import ScoreTable
from scanner.serve.accept import worker_shares
from scanner.serve.scoreboard import Scoreboard
from scanner.serve.watch import FileWatch
from scanner.serve.worker import RETIRED, run_worker
from scanner.unixsock import FileId, UnixSocketError, bind_unix_socket, file_id, unlink_if_same

log = logging.getLogger("scanner")
PR_SET_PDEATHSIG = 1
POLL_INTERVAL = 0.25  # how often the master reaps children and reads heartbeats
_CONTROL_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
STARTUP_GRACE = 120.0  # a worker loading its checks has not beaten yet: wait longer
BACKOFF_MAX = 60.0  # longest wait before the next worker of a slot whose workers die starting


def bind_listeners(config: Config) -> list[tuple[ListenerConfig, socket.socket]]:
    """Open every listening socket before forking (errors name the address)."""
    out = []
    for lst in config.listeners:
        if lst.path:
            out.append((lst, _bind_path(lst, out)))
            continue
        family = socket.AF_INET6 if ":" in lst.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((lst.address, lst.port))
        except OSError as exc:
            sock.close()
            unlink_listeners(listener_files(out))
            why = (f"cannot listen on {lst.address}:{lst.port} ({lst.protocol} listener): "
                   f"{exc.strerror}")
            log.error("%s; not starting", why)  # also in server.log_file, not only stderr
            raise SystemExit(f"scanner: {why}") from None
        sock.listen(256)
        sock.setblocking(False)
        out.append((lst, sock))
    return out


def _bind_path(lst: ListenerConfig, bound: list[tuple[ListenerConfig, socket.socket]]
               ) -> socket.socket:
    """A Unix socket listener (its mode and group set; a stale file replaced)."""
    try:
        return bind_unix_socket(lst.path, lst.socket_mode, lst.socket_group,
                                f"{lst.protocol} listener socket", backlog=256)
    except UnixSocketError as exc:
        unlink_listeners(listener_files(bound))
        log.error("%s; not starting", exc)
        raise SystemExit(f"scanner: {exc}") from None


def listener_files(sockets: list[tuple[ListenerConfig, socket.socket]]
                   ) -> list[tuple[str, FileId | None]]:
    """The socket files of the Unix socket listeners, as bound (taken right after
    binding: the master closes its sockets when it stops)."""
    return [(lst.path, file_id(lst.path)) for lst, _ in sockets if lst.path]


def unlink_listeners(files: list[tuple[str, FileId | None]]) -> None:
    """Remove the socket files of :func:`listener_files` that are still ours (the
    master, at exit)."""
    for path, wanted in files:
        unlink_if_same(path, wanted)


def listener_name(lst: ListenerConfig) -> str:
    """How the log names a listener: ``smtp:[127.0.0.1]:10024``, ``lmtp:unix:PATH``."""
    return f"{lst.protocol}:unix:{lst.path}" if lst.path else \
        f"{lst.protocol}:[{lst.address}]:{lst.port}"


class Master:
    """Keeps ``n`` workers alive until told to stop."""

    def __init__(self, config: Config, sockets: list, hostname: str, workers: int,
                 ampdp: Sequence[socket.socket] = (), board: Scoreboard | None = None,
                 last_good: LastGood | None = None,
                 scores: ScoreTable | None = None, watch: FileWatch | None = None) -> None:
        """``scores``: the score table read at start (every worker uses this one);
        None = each worker reads the score files itself. ``watch``: the checks' files
        whose change is reloaded as a SIGHUP is. ``last_good`` holds what the checks
        loaded and the notice templates (read at start, again on SIGHUP)."""
        self._config = config
        self._scores = scores
        self._last_good = last_good if last_good is not None else LastGood()
        self._ampdp = ampdp
        self._sockets = sockets
        self._hostname = hostname
        self._n = workers
        self._shares = worker_shares(config.server.concurrency, workers)
        self._board = board if board is not None else Scoreboard(workers)
        self._children: dict[int, tuple[float, int]] = {}  # pid -> (started, slot)
        self._killed: set[int] = set()  # pids the watchdog killed
        self._due: dict[int, float] = {}  # slot -> when (monotonic) to start its worker
        self._failed_starts: dict[int, int] = {}  # slot -> workers in a row that died starting
        self._stopping = False
        self._hup_seen = False  # a SIGHUP came; the main loop checks the configuration
        self._watch = watch
        self._changed: list[str] = []  # watched files changed since the last check
        self._master_pid = os.getpid()

    def run(self) -> int:
        # SIGCHLD ignored by whatever started us (it is inherited across exec) makes the
        # kernel reap dead workers itself: never replaced, and the master left at once
        # when the last one died
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        log.info("starting %d workers on %s", self._n,
                 ", ".join(listener_name(lst) for lst, _ in self._sockets))
        if self._board.carried:
            log.warning("%d message(s) that stopped workers in the previous run are still "
                        "remembered for server.hang_limit (scanner status lists them; remove "
                        "the status file while scanner is stopped to forget them)",
                        self._board.carried)
        for index in range(self._n):
            if self._stopping:
                break
            self._spawn(index)
        if self._stopping:  # told to stop while forking: tell the late ones too
            self._on_stop(signal.SIGTERM, None)
        while self._children or (self._due and not self._stopping):
            pid, status = self._wait_any()
            if pid:
                self._reaped(pid, status)
                continue
            self._watchdog()  # also while stopping: a stuck worker never exits
            self._start_due()
            self._watch_files()
            self._after_hup()
            time.sleep(POLL_INTERVAL)
        log.info("all workers stopped")
        return 0

    def _wait_any(self) -> tuple[int, int]:
        """A worker that exited (pid, wait status), or (0, 0) when none has."""
        try:
            return os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # none left, whatever _children says
            self._children.clear()
            return 0, 0

    def _reaped(self, pid: int, status: int) -> None:
        """Worker ``pid`` is gone: schedule its slot's next worker (unless stopping).

        A worker that dies before its first heartbeat (while loading its checks, or
        killed by the watchdog's start-up grace) is likely to be followed by one that
        does the same: the slot's next worker waits 1, 2, 4 ... up to
        :data:`BACKOFF_MAX` seconds, and each of these deaths is logged with the count.
        The master goes on reaping, watching and stopping meanwhile."""
        started, index = self._children.pop(pid, (None, -1))
        killed = pid in self._killed
        self._killed.discard(pid)
        if self._stopping or started is None:
            return
        state = self._board.read_slot(index)
        if state.heartbeat == state.spawned:  # it never beat: died while starting
            failures = self._failed_starts.get(index, 0) + 1
            self._failed_starts[index] = failures
            delay = min(BACKOFF_MAX, 2.0 ** (failures - 1))
            log.error("worker %d died while starting (%s), %d time(s) in a row in slot %d "
                      "(the lines before say why); starting a new one in %.0f s", pid,
                      "killed by the watchdog" if killed else _describe(status), failures,
                      index, delay)
            self._due[index] = time.monotonic() + delay
            return
        self._failed_starts.pop(index, None)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == RETIRED:
            log.info("worker %d retired; starting a new one", pid)
        elif not killed:
            log.error("worker %d exited (%s); starting a new one", pid, _describe(status))
        # do not spin on a worker that dies as soon as it serves
        self._due[index] = started + 1.0

    def _start_due(self) -> None:
        """Start the workers whose time has come (see :meth:`_reaped`)."""
        now = time.monotonic()
        for index, due in sorted(self._due.items()):
            if due <= now and not self._stopping:
                del self._due[index]
                self._spawn(index, restart=True)

    def _watchdog(self) -> None:
        """SIGKILL every worker whose event loop has not beaten for watchdog_timeout."""
        limit = self._config.server.watchdog_timeout
        if not limit:
            return
        now = time.monotonic()
        for pid, (_, index) in list(self._children.items()):
            state = self._board.read_slot(index)
            silent = now - state.heartbeat
            allowed = limit if state.heartbeat != state.spawned else max(limit, STARTUP_GRACE)
            if silent <= allowed or pid in self._killed:
                continue
            doing = (f"; last stage '{state.stage}' of mail_id {state.mail_id} (message "
                     f"{state.digest.hex()}), entered {now - state.stage_since:.0f} s ago"
                     if state.mail_id else "")
            log.error("worker %d unresponsive for %.0f s (%d open transactions, which "
                      "Postfix will retry%s); killing it%s", pid, silent,
                      state.open_transactions, doing,
                      " (scanner is stopping)" if self._stopping
                      else " and starting a new one")
            self._killed.add(pid)
            self._board.killed_by_watchdog()
            if state.mail_id:  # the message it was busy with when it went silent
                self._board.slot(index).record_hang(state.digest)
            _kill(pid, signal.SIGKILL)

    def _spawn(self, index: int, restart: bool = False) -> None:
        """Fork a worker for slot ``index``.

        The stop and reload signals are blocked across the fork: a SIGTERM that reaches
        the master then waits until the new child is in ``_children`` (so ``_on_stop``
        signals it too), and one that reaches the child waits until the child has set
        its own dispositions. Without the block, a SIGTERM arriving in the child while
        it still had the master's Python handler could be dropped when that handler was
        replaced before it ran (CPython skips pending signals whose handler became
        SIG_DFL): a worker then missed "stop" and served on (seen 4 times in 60 quick
        start-stop cycles on a loaded machine).

        Nothing is forked once the master is stopping: a SIGTERM handled after the
        caller looked at ``_stopping`` (a worker is restarted) and before the block
        signalled only the workers there were, and the new one then served on while
        the master waited for it for ever."""
        signal.pthread_sigmask(signal.SIG_BLOCK, _CONTROL_SIGNALS)
        try:
            if self._stopping:
                return
            self._board.spawned(index, restart)  # fresh heartbeat before the fork
            pid = os.fork()
            if pid == 0:
                self._child(index)  # never returns
            self._board.set_pid(index, pid)
            self._children[pid] = (time.monotonic(), index)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _CONTROL_SIGNALS)

    def _child(self, index: int) -> NoReturn:
        """The forked worker for slot ``index``: its own signal dispositions, then serve;
        exits the process (never returns into the master's code).

        While it starts, SIGTERM/SIGINT have their default action (a worker told to stop
        before it serves has nothing to finish) and SIGHUP is blocked. SIGHUP was
        ignored there: a reload asked for while a worker loaded its checks (a new model
        file) was lost, and that worker scored with the old data until the next SIGHUP.
        Blocked, the signal stays pending (Linux keeps a blocked signal even while its
        action is to ignore it) until the worker's handler takes it."""
        code = 0
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            # SIGHUP stays blocked: one that comes while the worker loads its checks
            # waits (pending) until its reload handler is there (reload.handle_signals)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _CONTROL_SIGNALS - {signal.SIGHUP})
            _die_with_parent(self._master_pid)
            code = run_worker(self._config, self._sockets, self._hostname,
                              self._ampdp, self._board.slot(index),
                              self._shares[index], self._last_good, self._scores)
        except BaseException:
            log.exception("worker crashed")
            code = 1
        finally:
            logging.shutdown()
            os._exit(code)

    def _on_stop(self, signum: int, frame: object) -> None:
        if os.getpid() != self._master_pid:
            os._exit(0)  # a worker signalled before it installed its own handlers
        self._stopping = True
        for _, sock in self._sockets:  # new connections are refused from now on
            sock.close()
        for pid in list(self._children):
            _kill(pid, signal.SIGTERM)

    def _on_hup(self, signum: int, frame: object) -> None:
        """Pass SIGHUP on to the workers; the configuration check waits for the main
        loop (:meth:`_after_hup`). It builds every check, which takes a second or more,
        and in here a SIGHUP during it ran this handler again inside it: a storm of
        them nested until Python's recursion limit."""
        if os.getpid() != self._master_pid:
            return
        self._reload_workers()
        self._hup_seen = True

    def _reload_workers(self) -> None:
        for pid in list(self._children):
            _kill(pid, signal.SIGHUP)

    def _watch_files(self) -> None:
        """In the main loop: a watched file that changed is reloaded as on SIGHUP (the
        workers reload in their thread pools; the master's check keeps what it loads
        for the workers forked later)."""
        if self._watch is None or self._stopping:
            return
        changed = self._watch.changed()
        if not changed:
            return
        log.info("%s changed; the workers reload the checks' data, as on SIGHUP",
                 ", ".join(changed))
        self._reload_workers()
        self._changed.extend(p for p in changed if p not in self._changed)

    def _after_hup(self) -> None:
        """In the main loop: check the configuration file once for the SIGHUPs (and
        watched files' changes) seen since the last check (:func:`report_config_on_hup`)."""
        if not (self._hup_seen or self._changed) or self._stopping:
            return
        cause = "SIGHUP" if self._hup_seen else f"{', '.join(self._changed)} changed"
        self._hup_seen = False  # a SIGHUP during the check asks for one more
        self._changed = []
        report_config_on_hup(self._config, self._last_good, cause)


def report_config_on_hup(config: Config, last_good: LastGood | None = None,
                         cause: str = "SIGHUP") -> None:
    """SIGHUP reloads the checks' data, not the configuration file: say so when the file
    was changed, and warn at once when the next start would fail on it: the file does
    not load, or what start-up checks beyond it does not pass (a check's settings, a
    score file, a path; as ``scanner config check`` does). ``cause`` begins the log
    lines: SIGHUP, or the watched files that changed (:mod:`scanner.serve.watch`).

    When the file is unchanged and passes, what its checks loaded now goes into
    ``last_good`` (the master's): a worker started later that finds a file broken falls
    back to this data, as the running workers keep it, not to what the master read at
    start (a model replaced and reloaded since came back in that worker alone). With
    the shipped defaults (no file) only the checks' data is loaded again."""
    loaded = LastGood()
    try:
        current = load(config.source) if os.path.isfile(config.source) else config
        _validate_as_start_does(current, loaded)
    except ConfigError as exc:
        log.error("%s: %s; still running with the configuration read at start "
                  "(fix it before the next restart: scanner config check %s)", cause, exc,
                  config.source)
        return
    except Exception:  # in the master's main loop: never let it end the master
        log.exception("%s: checking %s as a start would failed; still running with "
                      "the configuration read at start (try: scanner config check %s)",
                      cause, config.source, config.source)
        return
    if current != config:
        log.warning("%s: %s has changed since start; SIGHUP reloads only the checks' "
                    "data (model, rules): restart scanner serve to apply it", cause,
                    config.source)
    elif last_good is not None:
        last_good.update(loaded)
        log.info("%s: %s checked; a worker started from now on that finds a data file "
                 "broken keeps what was read now", cause, config.source)


def _validate_as_start_does(config: Config, loaded: LastGood | None = None) -> None:
    """Raise the :class:`ConfigError` a start with ``config`` would stop with; what the
    checks loaded is kept in ``loaded``."""
    # imported here: scanner.cli imports this module (serve_cmd)
    from scanner.cli.config_cmd import check_paths, preflight

    check_paths(config)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # what the checks say loading is the workers' to say
    try:
        checks, _ = preflight(config, loaded)
        close_checks(checks)
    finally:
        logging.disable(previous)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _die_with_parent(master_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != master_pid:  # the master died before prctl took effect
        os._exit(1)

"""The pre-forking master: bind the listeners, fork workers, restart the ones that die.

Workers inherit the listening sockets and the kernel spreads new connections among
them. A worker dies with its master (PR_SET_PDEATHSIG), so a killed master never
leaves orphans holding the ports. SIGTERM/SIGINT: workers finish open transactions
and exit; SIGHUP is passed on to the workers (reload hooks).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import time

from scanner.config import Config, ListenerConfig
from scanner.serve.worker import run_worker

log = logging.getLogger("scanner")
PR_SET_PDEATHSIG = 1


def bind_listeners(config: Config) -> list[tuple[ListenerConfig, socket.socket]]:
    """Open every listening socket before forking (errors name the address)."""
    out = []
    for lst in config.listeners:
        family = socket.AF_INET6 if ":" in lst.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((lst.address, lst.port))
        except OSError as exc:
            sock.close()
            raise SystemExit(f"scanner: cannot listen on {lst.address}:{lst.port}: "
                             f"{exc.strerror}") from None
        sock.listen(256)
        sock.setblocking(False)
        out.append((lst, sock))
    return out


class Master:
    """Keeps ``n`` workers alive until told to stop."""

    def __init__(self, config: Config, sockets: list, hostname: str, workers: int,
                 ampdp: socket.socket | None = None) -> None:
        self._config = config
        self._ampdp = ampdp
        self._sockets = sockets
        self._hostname = hostname
        self._n = workers
        self._children: dict[int, float] = {}
        self._stopping = False
        self._master_pid = os.getpid()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        log.info("starting %d workers on %s", self._n,
                 ", ".join(f"{lst.protocol}:[{lst.address}]:{lst.port}"
                           for lst, _ in self._sockets))
        while len(self._children) < self._n and not self._stopping:
            self._spawn()
        if self._stopping:  # told to stop while forking: tell the late ones too
            self._on_stop(signal.SIGTERM, None)
        while self._children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            started = self._children.pop(pid, None)
            if self._stopping or started is None:
                continue
            log.error("worker %d exited (status %d); starting a new one", pid, status)
            if time.monotonic() - started < 1.0:
                time.sleep(1.0)  # do not spin on a worker that dies at start
            if not self._stopping:
                self._spawn()
        log.info("all workers stopped")
        return 0

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _die_with_parent(self._master_pid)
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                run_worker(self._config, self._sockets, self._hostname, self._ampdp)
            except BaseException:
                log.exception("worker crashed")
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        self._children[pid] = time.monotonic()

    def _on_stop(self, signum: int, frame: object) -> None:
        if os.getpid() != self._master_pid:
            os._exit(0)  # a worker signalled before it installed its own handlers
        self._stopping = True
        for pid in list(self._children):
            _kill(pid, signal.SIGTERM)

    def _on_hup(self, signum: int, frame: object) -> None:
        if os.getpid() != self._master_pid:
            return
        for pid in list(self._children):
            _kill(pid, signal.SIGHUP)


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

"""Run ``scanner serve`` as a real subprocess for tests and benchmarks.

``FilterProcess`` writes a TOML config, starts the daemon, waits until every listener
accepts connections, and can stop it gently (SIGTERM) or kill it (SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on {host}:{port} after {timeout:g} s") from None
            time.sleep(0.05)


class FilterProcess:
    """One ``scanner serve`` daemon with its own config, log and pid files."""

    def __init__(self, base: Path, config_text: str, ports: list[int]) -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.config_path = self.base / "scanner.toml"
        self.log_path = self.base / "scanner.log"
        self.stderr_path = self.base / "scanner.stderr"
        self.config_path.write_text(config_text, encoding="utf-8")
        self.ports = ports
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> None:
        env = dict(os.environ)
        env.pop("SCANNER_CONFIG", None)
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scanner", "serve", "--config", str(self.config_path)],
                stdout=err, stderr=err, env=env, start_new_session=True)
        try:
            for port in self.ports:
                wait_port("127.0.0.1", port, timeout)
        except TimeoutError:
            self.kill()
            raise RuntimeError("scanner serve did not start:\n" + self.stderr_text()) from None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not go."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the whole process group (master and workers) at once."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def kill_master(self) -> None:
        """SIGKILL only the master; workers must die with it."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text("utf-8", "replace").splitlines()
        except OSError:
            return []

    def summary_lines(self) -> list[str]:
        """Only the per-message amavis-style lines."""
        return [ln for ln in self.log_lines() if " Passed " in ln or " Blocked " in ln]

    def __enter__(self) -> FilterProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

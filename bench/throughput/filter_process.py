"""The filter under test in bench/throughput: its process, configuration and resources.

``ScannerProcess`` runs ``python -m scanner serve`` with a generated configuration;
``descendants``, ``pss_kib`` and ``cpu_seconds`` read /proc for its memory and CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scanner.testing.dns_server import dns_checks_toml  # noqa: E402
from scanner.testing.postfix import PostfixError, wait_for_port  # noqa: E402

MESSAGE_TIMEOUT = 600.0  # scanner's server.message_timeout in the generated config


class ScannerProcess:
    """``python -m scanner serve`` in its own session, with a generated configuration."""

    def __init__(self, base: Path, port: int, reinject_port: int, args: argparse.Namespace,
                 clamd_endpoint: str | None = None):
        self.base = base
        self.port = port
        self.log_file = base / "scanner.log"
        self.out_file = base / "scanner.out"
        self.config_file = base / "scanner.toml"
        self.config_file.write_text(scanner_toml(base, port, reinject_port, args,
                                                 clamd_endpoint))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        probe = subprocess.run([sys.executable, "-c", "import scanner.cli.serve_cmd"],
                               capture_output=True, text=True, cwd=ROOT, check=False)
        if probe.returncode != 0:
            last = (probe.stderr.strip().splitlines() or ["?"])[-1]
            raise RuntimeError(f"'scanner serve' is not importable yet: {last}")
        with open(self.out_file, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scanner", "serve", "--config", str(self.config_file)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if problem := self.problem():
                raise RuntimeError(problem)
            try:
                wait_for_port(self.port, 0.5)
                return
            except PostfixError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"scanner does not listen on port {self.port} after "
                                       f"{timeout:g} s\n{self.tail()}") from None

    def problem(self) -> str | None:
        """Why the filter is unusable (it exited), or None."""
        if self.proc is not None and self.proc.poll() is not None:
            return f"scanner serve exited with status {self.proc.returncode}\n{self.tail()}"
        return None

    def tail(self, lines: int = 15) -> str:
        text = ""
        for path in (self.out_file, self.log_file):
            if path.exists():
                text += path.read_text(encoding="utf-8", errors="replace")
        return "--- scanner output ---\n" + "\n".join(text.splitlines()[-lines:])

    def log_size(self) -> int:
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def filter_times(self, offset: int) -> list[int]:
        """Per-message times (ms) from the summary log lines written after ``offset``."""
        if not self.log_file.exists():
            return []
        with open(self.log_file, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
        times = []
        for line in text.splitlines():
            head, sep, tail = line.rstrip().rpartition(", ")
            if sep and "mail_id:" in head and tail.endswith(" ms"):
                number = tail[:-3]
                if number.isdigit():
                    times.append(int(number))
        return times

    def pids(self) -> list[int]:
        """The master and all its live descendants."""
        return [] if self.proc is None else [self.proc.pid, *descendants(self.proc.pid)]

    def memory(self) -> dict[str, object]:
        """PSS (KiB) of the master and all its descendants, and how many they are."""
        pids = self.pids()
        return {"pss_kib": sum(pss_kib(pid) for pid in pids), "processes": len(pids)}

    def cpu(self) -> tuple[float, float]:
        """(user, system) CPU seconds used so far by the master and its descendants."""
        times = [cpu_seconds(pid) for pid in self.pids()]
        return sum(t[0] for t in times), sum(t[1] for t in times)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


class FloorRelayProcess(ScannerProcess):
    """run.py's (r): bench/throughput/floor_relay.py, the bare asyncio relay, in place of
    ``scanner serve`` (same ports, same log-line ending, so the same measurements)."""

    def __init__(self, base: Path, port: int, reinject_port: int, workers: int) -> None:
        self.base = base
        self.port = port
        self.reinject_port = reinject_port
        self.workers = workers  # as many as scanner serve gets (run.py --workers)
        self.log_file = base / "floor.log"
        self.out_file = base / "floor.out"
        self.proc = None

    def start(self, timeout: float = 30.0) -> None:
        with open(self.out_file, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "bench/throughput/floor_relay.py"),
                 "--port", str(self.port), "--next-port", str(self.reinject_port),
                 "--log", str(self.log_file), "--workers", str(self.workers)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(self.port, timeout)
        except PostfixError:
            raise RuntimeError(f"floor relay does not listen on port {self.port}\n"
                               f"{self.tail()}") from None


def filter_code() -> str:
    """Which code the filter runs: this checkout (``python -m scanner`` runs with the
    checkout as its working directory, so ``PYTHONPATH`` cannot choose another; run the
    script from a clone at the commit to measure), its commit, and whether files differ."""
    def git(*argv: str) -> str:
        out = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(ROOT), *argv],
                             capture_output=True, text=True, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    changed = " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") \
        else ""
    return f"{ROOT} at {commit}{changed}"


def scanner_toml(base: Path, port: int, reinject_port: int, args: argparse.Namespace,
                 clamd_endpoint: str | None = None) -> str:
    """The filter's configuration for one benchmark run (ClamAV on only with a clamd)."""
    lines = [
        "[server]",
        f"workers = {args.workers}",
        f"concurrency = {args.filter_maxproc}",
        f"message_timeout = {MESSAGE_TIMEOUT}",
        'hostname = "scanner.test"',
        f'log_file = "{base / "scanner.log"}"',
        f'pid_file = "{base / "scanner.pid"}"',
        "",
        "[[listeners]]",
        'address = "127.0.0.1"',
        f"port = {port}",
        'protocol = "smtp"',
        "",
        "[reinject]",
        'host = "127.0.0.1"',
        f"port = {reinject_port}",
    ]
    lines += ["", "[quarantine]", f'directory = "{base / "quarantine"}"', 'ampdp_socket = ""']
    checks = _names(args.checks)
    disabled = [n for n in _names(args.disable_checks) if n != "clamav"]
    if clamd_endpoint is None:
        disabled.append("clamav")
    lines += ["", "[checks]", f"enabled = {json.dumps(checks)}",
              f"disabled = {json.dumps(disabled)}"]
    if clamd_endpoint is not None:
        lines += ["", "[checks.settings.clamav]", f"endpoints = [{json.dumps(clamd_endpoint)}]"]
    text = "\n".join(lines) + "\n"
    resolver = getattr(args, "local_dns_resolver", None)
    if resolver:
        text += dns_checks_toml(resolver)
    if args.extra_toml:
        text += "\n" + Path(args.extra_toml).read_text(encoding="utf-8")
    return text


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def pss_kib(pid: int) -> int:
    """Proportional set size of one process in KiB (0 if it is gone)."""
    return _proc_kib(pid, "smaps_rollup", "Pss:")


def rss_kib(pid: int) -> int:
    """Resident set size of one process in KiB (0 if it is gone)."""
    return _proc_kib(pid, "status", "VmRSS:")


def _proc_kib(pid: int, name: str, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/{name}").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of one process and its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[13])) / tick, (int(fields[12]) + int(fields[14])) / tick

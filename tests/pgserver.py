"""A private throw-away PostgreSQL server for the tests (the ``pg_server`` fixture) and
the benchmarks that need one: ``initdb`` in a temporary directory, the server on a Unix
socket there only (no TCP), trust authentication, fsync off; run as the ``postgres``
user when started by root (the server refuses root). Stopped and removed at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PgServer:
    """A private PostgreSQL server (:func:`private_postgresql`): its URL, and stop/start for
    tests of an outage (a test that stops it starts it again)."""

    url: str
    ctl: list[str]  # pg_ctl -D DATA, run as the server's user
    options: str
    log: str

    def stop(self) -> None:
        subprocess.run([*self.ctl, "-m", "immediate", "-w", "stop"], check=True,
                       capture_output=True)

    def start(self) -> None:
        subprocess.run([*self.ctl, "-l", self.log, "-w", "-o", self.options, "start"],
                       check=True, capture_output=True)

    def signal_all(self, sig: int) -> None:
        """Send ``sig`` to the server and its backends (SIGSTOP: a server that no longer
        answers on open connections; SIGCONT: on again)."""
        data = Path(self.ctl[self.ctl.index("-D") + 1])
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(postmaster)],
                                  capture_output=True, text=True).stdout.split()
        for pid in [postmaster, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):  # a backend that just ended
                os.kill(pid, sig)


def postgresql_missing() -> str | None:
    """Why no private PostgreSQL server can run here, or None."""
    if _bin_dir() is None:
        return "PostgreSQL server binaries not installed (apt-get install postgresql)"
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            return "running PostgreSQL as root needs runuser(1) and a postgres user"
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            return "no postgres user to run the server as"
    return None


@contextlib.contextmanager
def private_postgresql() -> Iterator[PgServer]:
    """Run a server (see the module docstring); database postgres, user scanner."""
    bin_dir = _bin_dir()
    assert bin_dir is not None, postgresql_missing()
    base = Path(tempfile.mkdtemp(prefix="scanner-pg-", dir="/tmp"))
    base.chmod(0o755)
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(base, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                    "scanner", "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
    server = PgServer(f"postgresql://scanner@/postgres?host={base}",
                      [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)],
                      f"-k {base} -c listen_addresses='' -c fsync=off", str(base / "log"))
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(OSError, ValueError):  # a test that froze it, failing
            server.signal_all(signal.SIGCONT)
        subprocess.run([*server.ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)

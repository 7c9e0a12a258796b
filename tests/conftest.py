"""Suite-wide test settings: Hypothesis profiles, the scriptable next hop, a private
PostgreSQL server and a private OpenLDAP server.

Local runs draw new random examples every time (that is how the decoder property tests
found their bugs). CI sets ``HYPOTHESIS_PROFILE=ci`` (``.ci/run``): the examples are
derived from each test's name instead, so a landing is judged on the same inputs every
time and a failure there can be re-run exactly.
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
from typing import Any

import pytest
from hypothesis import settings

from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A scriptable next hop (``scanner.testing.sink``) on a free loopback port."""
    s = Sink(free_port()).start()
    yield s
    s.stop()


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PgServer:
    """The private PostgreSQL server of :func:`pg_server`: its URL, and stop/start for
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


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """A private throw-away PostgreSQL server (skipped without psycopg or the server
    binaries: apt-get install postgresql); database postgres, user scanner."""
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="scanner-pg-", dir="/tmp"))
    base.chmod(0o755)
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running PostgreSQL as root needs runuser(1) and a postgres user")
        try:
            shutil.chown(base, "postgres")
        except (LookupError, OSError):
            pytest.skip("no postgres user to run the server as")
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


@pytest.fixture
def slapd() -> Iterator[Any]:
    """A private OpenLDAP server (tests/slapd.py) with the project's amavisAccount schema,
    ``ou=people,dc=example,dc=test`` empty; killed at teardown."""
    from tests.slapd import private_slapd, slapd_missing

    why = slapd_missing()
    if why:
        pytest.skip(why)
    with private_slapd() as server:
        yield server

@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[str]:
    """A private throw-away MariaDB server (tests/mariadb.py), database ``test``; skipped
    without the server or PyMySQL."""
    from tests.mariadb import mariadb_missing, private_mariadb

    why = mariadb_missing()
    if why:
        pytest.skip(why)
    with private_mariadb() as url:
        yield url


@pytest.fixture(scope="module")
def pg_url(pg_server: PgServer) -> str:
    """The URL of :func:`pg_server`."""
    return pg_server.url

"""Suite-wide test settings: Hypothesis profiles, the scriptable next hop, a private
PostgreSQL server and a private OpenLDAP server.

Local runs draw new random examples every time (that is how the decoder property tests
found their bugs). CI sets ``HYPOTHESIS_PROFILE=ci`` (``.ci/run``): the examples are
derived from each test's name instead, so a landing is judged on the same inputs every
time and a failure there can be re-run exactly.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A private throw-away PostgreSQL server (skipped without psycopg or the server
    binaries: apt-get install postgresql); its URL, database postgres, user scanner."""
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
    subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l",
                    str(base / "log"), "-w", "-o",
                    f"-k {base} -c listen_addresses='' -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://scanner@/postgres?host={base}"
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def slapd() -> Iterator[Any]:
    """A private OpenLDAP server (tests/slapd.py) with the project's amavisAccount schema,
    ``ou=people,dc=example,dc=test`` empty; killed at teardown."""
    from tests.slapd import Slapd, slapd_missing

    why = slapd_missing()
    if why:
        pytest.skip(why)
    base = Path(tempfile.mkdtemp(prefix="scanner-slapd-", dir="/tmp"))
    server = Slapd(base).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)

"""The PostgreSQL index behind the same interface, against a private throw-away server.

Skipped when psycopg or the PostgreSQL server binaries are missing
(``apt-get install postgresql``; ``pip install 'psycopg[binary]'``).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from scanner.quarantine.config import QuarantineConfig
from scanner.quarantine.record import AlreadyReleased
from scanner.quarantine.release import release
from scanner.quarantine.store import Quarantine
from scanner.reinject.deliver import NextHop
from scanner.testing.sink import Sink

from .util import store

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def pg_url():
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
def pgq(pg_url: str, tmp_path: Path) -> Quarantine:
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS quarantine, quarantine_rcpt")
    return Quarantine(QuarantineConfig(directory=str(tmp_path / "q"), index=pg_url),
                      hostname="filter1.test")


def test_round_trip_and_filters(pgq: Quarantine):
    a = store(pgq, recipients=["Bob@example.test"])
    b = store(pgq, category="VIRUS", recipients=["carol@example.test"], subject="caf\u00e9")
    assert pgq.get(b.mail_id).subject == "caf\u00e9"
    assert pgq.get(a.mail_id).secret_id == a.secret_id
    assert [r.mail_id for r in pgq.list()] == [a.mail_id, b.mail_id]
    assert [r.mail_id for r in pgq.list(category="virus")] == [b.mail_id]
    assert [r.mail_id for r in pgq.list(rcpt="bob@EXAMPLE.test")] == [a.mail_id]
    assert pgq.list(since=time.time() + 10) == []
    assert "password" not in pgq.index.location


def test_claim_is_exclusive_and_expire_respects_it(pgq: Quarantine):
    rec = store(pgq)
    token = pgq.index.claim(rec.mail_id, "one")
    assert token and pgq.index.claim(rec.mail_id, "two") is None
    assert pgq.expire(0) == 0
    assert pgq.index.finish(rec.mail_id, token, ["bob@example.test"], ["250 ok"])
    assert pgq.get(rec.mail_id).state == "released"
    assert pgq.expire(0) == 1 and pgq.list() == []


def test_release_through_postgres_index(pgq: Quarantine, sink: Sink, hop: NextHop):
    rec = store(pgq)
    replies = asyncio.run(release(pgq, hop, rec.mail_id, recipients=None,
                                  requested_by="pg"))
    assert replies[0].startswith("250")
    with pytest.raises(AlreadyReleased):
        asyncio.run(release(pgq, hop, rec.mail_id, recipients=None, requested_by="pg"))
    assert len(sink.wait_for(1)) == 1

"""A private MariaDB server for the tests that read amavis's MySQL/MariaDB SQL quarantine.

``mariadb-install-db`` makes a data directory in a temporary directory; ``mariadbd``
runs on it as the test's child, on a Unix socket only (``--skip-networking``), with no
password for root over that socket. Killed and removed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"


def mariadb_missing() -> str | None:
    """Why no private MariaDB server can run here, or None."""
    if not (Path(MARIADBD).exists() and Path(INSTALL_DB).exists()):
        return "MariaDB server is not installed (apt-get install mariadb-server)"
    try:
        import pymysql  # noqa: F401
    except ImportError:
        return "PyMySQL is not installed (pip install 'scanner[mysql]')"
    return None


@contextlib.contextmanager
def private_mariadb() -> Iterator[str]:
    """Run a server; yields its URL for scanner (``mysql://root@localhost/test?
    unix_socket=...``; the database ``test`` exists)."""
    base = Path(tempfile.mkdtemp(prefix="scanner-mariadb-", dir="/tmp"))
    data, sock = base / "data", base / "mysqld.sock"
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run([INSTALL_DB, f"--datadir={data}", *user, "--auth-root-authentication-"
                    "method=normal", "--skip-test-db", "--skip-name-resolve"],
                   check=True, capture_output=True, timeout=120)
    log = open(base / "server.log", "wb")  # noqa: SIM115 (closed at teardown)
    proc = subprocess.Popen([MARIADBD, "--no-defaults", f"--datadir={data}", *user,
                             f"--socket={sock}", "--skip-networking", f"--pid-file={base}/pid",
                             "--innodb-buffer-pool-size=16M", "--skip-log-bin",
                             f"--log-error={base}/error.log"], stdout=log, stderr=log)
    try:
        _wait_ready(sock, proc, base)
        import pymysql

        with contextlib.closing(pymysql.connect(unix_socket=str(sock), user="root")) as con, \
                con.cursor() as cur:
            cur.execute("CREATE DATABASE test")
        yield f"mysql://root@localhost/test?unix_socket={sock}"
    finally:
        proc.kill()
        proc.wait(30)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def _wait_ready(sock: Path, proc: subprocess.Popen, base: Path, seconds: float = 60) -> None:
    import pymysql

    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError("mariadbd exited: " + (base / "error.log").read_text(
                errors="replace")[-2000:])
        try:
            pymysql.connect(unix_socket=str(sock), user="root").close()
            return
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

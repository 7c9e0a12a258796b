"""A store either completes (file fsynced, row committed) or leaves nothing visible:
killed half-way, out of disk space, or over a file size limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scanner.quarantine.config import QuarantineConfig
from scanner.quarantine.record import QuarantineError, UnknownMailId
from scanner.quarantine.store import Quarantine

from .util import REPO, store

# A child that stores one message and stops (sleeps) at a chosen point, after telling
# the parent through a marker file; the parent then kills it with SIGKILL.
CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from scanner.quarantine.config import QuarantineConfig
    from scanner.quarantine.index import Index
    from scanner.quarantine.store import Quarantine
    directory, marker, where = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

    def stop_here(*args, **kwargs):
        marker.write_text("stopped")
        time.sleep(60)

    if where == "write":
        real_fsync = os.fsync
        def fsync(fd):
            if not os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
                stop_here()
            real_fsync(fd)
        os.fsync = fsync
    else:
        Index.insert = stop_here
    q = Quarantine(QuarantineConfig(directory=directory))
    q.store(mail_id="killedABCDEF", raw=os.urandom(200000), sender="a@example.org",
            recipients=["b@example.test"], category="SPAM", score=None, symbols=[],
            subject="", message_id="", client_addr=None, policy_bank="")
""")


def _kill_during_store(qdir: Path, tmp_path: Path, where: str) -> None:
    marker = tmp_path / "marker"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(qdir), str(marker), where],
                            env=env)
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert proc.poll() is None, "the child ended before reaching the kill point"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _files(qdir: Path) -> list[Path]:
    return sorted(p for p in qdir.rglob("*") if p.is_file() and "index.sqlite" not in p.name)


def _age(paths: list[Path], seconds: float = 7200) -> None:
    for p in paths:
        os.utime(p, (time.time() - seconds, time.time() - seconds))


def test_killed_while_writing_leaves_no_row_and_no_file(qdir: Path, tmp_path: Path):
    _kill_during_store(qdir, tmp_path, "write")
    q = Quarantine(QuarantineConfig(directory=str(qdir)))
    assert q.list() == []
    left = _files(qdir)
    assert [p.name.startswith(".tmp-") for p in left] == [True]  # only hidden debris
    with pytest.raises(UnknownMailId):
        q.get("killedABCDEF")
    assert q.sweep() == []  # young debris may belong to a running store
    _age(left)
    assert q.sweep() == left
    assert _files(qdir) == []


def test_killed_before_the_index_row_leaves_an_invisible_file(qdir: Path, tmp_path: Path):
    _kill_during_store(qdir, tmp_path, "index")
    q = Quarantine(QuarantineConfig(directory=str(qdir)))
    assert q.list() == []
    left = _files(qdir)
    assert [p.name for p in left] == ["spam-killedABCDEF.gz"]
    with pytest.raises(UnknownMailId, match="exists without one"):
        q.get("killedABCDEF")
    _age(left, 2 * 86400)
    assert q.expire(86400) == 0  # no row expired, but the stray file was swept
    assert _files(qdir) == []


def test_disk_full_on_a_small_tmpfs(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(small)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        q = Quarantine(QuarantineConfig(directory=str(small / "q")))
        with pytest.raises(QuarantineError, match="No space left on device"):
            store(q, raw=os.urandom(1 << 20))
        assert _files(small / "q") == []
        assert q.list() == []
        rec = store(q)  # small mail still fits: the quarantine is not left broken
        assert q.read(rec.mail_id).startswith(b"From:")
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_file_size_limit_raises_and_cleans_up(qdir: Path):
    """RLIMIT_FSIZE makes writes fail like a full disk, without privileges."""
    code = textwrap.dedent("""
        import os, resource, signal, sys
        from scanner.quarantine.config import QuarantineConfig
        from scanner.quarantine.record import QuarantineError
        from scanner.quarantine.store import Quarantine
        q = Quarantine(QuarantineConfig(directory=sys.argv[1]))
        q.list()  # the index exists before the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        try:
            q.store(mail_id="limitedABCDE", raw=os.urandom(300000), sender="a@example.org",
                    recipients=["b@example.test"], category="VIRUS", score=None,
                    symbols=[], subject="", message_id="", client_addr=None,
                    policy_bank="")
        except QuarantineError as exc:
            print("QuarantineError:", exc)
    """)
    qdir.mkdir()
    Quarantine(QuarantineConfig(directory=str(qdir))).index.list()
    out = subprocess.run([sys.executable, "-c", code, str(qdir)], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert "QuarantineError: cannot write quarantine file" in out.stdout, out.stderr
    assert "File too large" in out.stdout
    assert _files(qdir) == []
    assert Quarantine(QuarantineConfig(directory=str(qdir))).list() == []

"""A clamd whose threads are all busy (MaxThreads exhausted) accepts connections and
then says nothing: the ClamAV check must give up within its timeout, fail over to the
next endpoint, and never call the mail clean.

A real private clamd with ``MaxThreads 1`` is kept busy by one slow scan (a zip of
40,000 small HTML files takes clamd over ten seconds; it is killed when the test is
done); a second private clamd is healthy. This is how a clamd with MaxThreads or
MaxQueue exhausted looks to a client; nothing here needed a fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import scanner.config
from scanner.checks.base import CheckContext
from scanner.checks.clamav import ClamAV, ClamAVSettings
from scanner.task import Envelope, Recipient, Task
from scanner.testing.clamd import ClamdInstance, clamd_binary, eicar

pytestmark = pytest.mark.skipif(clamd_binary() is None,
                                reason="clamd not installed (apt-get install clamav-daemon)")


async def _run_here(func: Any, *args: Any) -> Any:
    return func(*args)


def make_check(endpoints: list[str], **settings: Any) -> ClamAV:
    config = ClamAVSettings(endpoints=tuple(endpoints), cache_size=0, **settings)
    return ClamAV(config, CheckContext(config=scanner.config.load(None), run_cpu=_run_here))


def task(body: bytes) -> Task:
    envelope = Envelope(sender="a@b.example", recipients=(Recipient("c@d.example"),))
    return Task(mail_id="busy", envelope=envelope, raw=b"Subject: x\n\n" + body + b"\n")


def slow_archive(files: int = 40000) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(files):
            archive.writestr(f"page{i}.html", f"<a href='http://h{i}.example/'>x</a>" * 50)
    return out.getvalue()


def occupy(clamd: ClamdInstance) -> threading.Thread:
    """Start a slow scan on clamd's only thread; return once clamd no longer answers
    STATS (which waits for a thread like a scan does; PING does not)."""
    blob = slow_archive()

    def scan() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, \
                contextlib.suppress(OSError):  # ends when the test kills clamd
            sock.settimeout(60)
            sock.connect(str(clamd.socket_path))
            sock.sendall(b"zINSTREAM\0" + len(blob).to_bytes(4, "big") + blob + b"\0" * 4)
            sock.recv(100)

    worker = threading.Thread(target=scan, daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while answers_stats(clamd, timeout=0.3):
        assert time.monotonic() < deadline, "clamd never got busy"
    return worker


def answers_stats(clamd: ClamdInstance, timeout: float) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(clamd.socket_path))
        sock.sendall(b"zSTATS\0")
        try:
            return sock.recv(100).startswith(b"POOLS")
        except TimeoutError:
            return False


@contextlib.contextmanager
def started(busy: ClamdInstance, healthy: ClamdInstance) -> Iterator[None]:
    """Start both clamds and occupy ``busy``; stop both however this ends (a second
    clamd that fails to start must not leave the first one running)."""
    workers: list[threading.Thread] = []
    with contextlib.ExitStack() as cleanup:  # callbacks run last first
        cleanup.callback(lambda: [worker.join(10) for worker in workers])
        cleanup.callback(healthy.close)
        cleanup.callback(busy.close)
        cleanup.callback(busy.kill)  # ends the slow scan at once: the cores are shared
        busy.start()
        healthy.start()
        workers.append(occupy(busy))
        yield


@pytest.fixture()
def busy_and_healthy(tmp_path: Path) -> Iterator[tuple[ClamdInstance, ClamdInstance]]:
    busy = ClamdInstance(tmp_path / "busy", max_threads=1, extra={"MaxFiles": "100000"})
    healthy = ClamdInstance(tmp_path / "healthy")
    with started(busy, healthy):
        yield busy, healthy


def test_a_second_clamd_failing_to_start_stops_the_first(tmp_path: Path) -> None:
    busy = ClamdInstance(tmp_path / "busy")
    broken = ClamdInstance(tmp_path / "broken", extra={"NoSuchClamdOption": "yes"})
    try:
        with pytest.raises(RuntimeError, match="during start-up"), started(busy, broken):
            pass
        assert not busy.running
    finally:
        busy.close()  # so that a failure here does not leak it either


def test_a_busy_clamd_fails_within_the_timeout_never_clean(busy_and_healthy) -> None:
    busy, _ = busy_and_healthy
    for fail_action, symbol in (("tempfail", "CLAMAV_FAIL"), ("unchecked", "CLAMAV_UNCHECKED")):
        check = make_check([busy.unix_endpoint], timeout=1.0, fail_action=fail_action)
        began = time.monotonic()
        hits = list(asyncio.run(check.run(task(b"hello"))))
        elapsed = time.monotonic() - began
        assert [h.symbol for h in hits] == [symbol]
        assert "no answer within 1.0 s" in hits[0].options[0]
        assert 0.9 < elapsed < 3.0


def test_a_busy_clamd_is_skipped_for_the_next_endpoint(busy_and_healthy) -> None:
    busy, healthy = busy_and_healthy
    check = make_check([busy.unix_endpoint, healthy.unix_endpoint], timeout=1.0)

    async def two() -> list[tuple[list[str], float]]:
        out = []
        for body in (eicar(), b"the next message"):
            began = time.monotonic()
            hits = [h.symbol for h in await check.run(task(body))]
            out.append((hits, time.monotonic() - began))
        check.close()
        return out

    (first, first_time), (second, second_time) = asyncio.run(two())
    assert first == ["CLAMAV_VIRUS"] and 0.9 < first_time < 3.0  # after one timeout
    assert second == [] and second_time < 0.9  # the busy one now goes last

"""The ClamAV result cache against a clamd that learns new signatures (freshclam, then
clamd's RELOAD): a remembered "clean" is used for ``cache_ttl`` seconds, not for the life
of the worker, so a file that was clean before the signature came is found after it."""

from __future__ import annotations

import asyncio
import socket
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import scanner.config
from scanner.checks.base import CheckContext
from scanner.checks.clamav import ClamAV, ClamAVSettings, ResultCache
from scanner.checks.clamd_client import ClamdClient, ScanReply, Status
from scanner.testing.clamd import ClamdInstance, clamd_binary
from scanner.testing.tasks import task_from_bytes

NEW = b"a payload that has no signature yet, then gets one"

needs_clamd = pytest.mark.skipif(clamd_binary() is None,
                                 reason="clamd not installed (apt-get install clamav-daemon)")


async def _run_here(func: Any, *args: Any) -> Any:
    return func(*args)


def make_check(endpoints: list[str], **settings: Any) -> ClamAV:
    config = ClamAVSettings(endpoints=tuple(endpoints), **settings)
    return ClamAV(config, CheckContext(config=scanner.config.load(None), run_cpu=_run_here))


def message() -> bytes:
    """A message with an attachment no signature knows yet."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@b.example", "c@d.example", "tool"
    msg.set_content("see attached\n")
    msg.add_attachment(NEW, maintype="application", subtype="octet-stream",
                       filename="tool.bin")
    return msg.as_bytes()


def reload_with_signature(clamd: ClamdInstance, name: str) -> None:
    """Add a signature for NEW, tell clamd to RELOAD, and wait until it uses it."""
    (clamd.db_dir / "late.ndb").write_text(f"{name}:0:*:{NEW.hex()}\n", "ascii")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(clamd.socket_path))
        sock.sendall(b"zRELOAD\0")
        assert sock.recv(64) == b"RELOADING\0"
    client = ClamdClient([clamd.unix_endpoint], reuse=False)
    deadline = time.monotonic() + 60
    while asyncio.run(client.instream(NEW)).status is not Status.INFECTED:
        assert time.monotonic() < deadline, clamd.log_tail()


@needs_clamd
def test_a_remembered_clean_answer_expires_after_cache_ttl(tmp_path: Path) -> None:
    now = [1000.0]
    with ClamdInstance(tmp_path) as clamd:
        check = make_check([clamd.unix_endpoint], cache_ttl=600.0, reuse_connections=False)
        check.cache.clock = lambda: now[0]

        raw = message()

        def scan() -> list[str]:  # the same bytes: Postfix retrying, the same mail again
            with task_from_bytes(raw) as task:  # the real decoders: the parts
                return [h.symbol for h in asyncio.run(check.run(task))]

        assert scan() == []  # clean today: remembered
        reload_with_signature(clamd, "Late.Signature")
        now[0] += 599.0
        assert scan() == []  # within cache_ttl the remembered answer stands
        now[0] += 1.0
        assert scan() == ["CLAMAV_VIRUS"]  # then clamd is asked again, with its new database
    assert check.client.requests == 3  # message and attachment, none, the message


def test_the_cache_keeps_answers_for_ttl_and_size() -> None:
    now = [0.0]
    cache = ResultCache(size=2, ttl=10.0, clock=lambda: now[0])
    clean, infected = ScanReply(Status.CLEAN), ScanReply(Status.INFECTED, ("V",))
    cache.put("a", clean)
    cache.put("b", infected)
    cache.put("c", ScanReply(Status.TOO_LARGE))  # never remembered
    now[0] = 9.9
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (clean, infected, None)
    now[0] = 10.0
    assert cache.get("a") is None and len(cache) == 1
    cache.put("a", clean)
    cache.put("d", clean)  # over size: the least recently used ("b") goes
    assert cache.get("b") is None and cache.get("a") == clean

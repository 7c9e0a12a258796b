"""Shared pieces of the clamav check's tests (tests/test_clamav*.py): building a check
against given endpoints, test mails and tasks, a stand-in for decoded parts, and a scan
against a ``FakeClamd``."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import scanner.config
from scanner.checks.base import CheckContext
from scanner.checks.clamav import ClamAV, ClamAVSettings
from scanner.task import Envelope, Hit, Recipient, Task
from scanner.testing.clamd import TESTFILES_DIR, FakeClamd, clamd_binary

EICAR = "Eicar-Test-Signature.UNOFFICIAL"
TEST_FILE = "ClamAV-Test-File.UNOFFICIAL"

needs_clamd = pytest.mark.skipif(clamd_binary() is None,
                                 reason="clamd not installed (apt-get install clamav-daemon)")
needs_clamscan = pytest.mark.skipif(shutil.which("clamscan") is None,
                                    reason="clamscan not installed (apt-get install clamav)")
needs_testfiles = pytest.mark.skipif(
    not TESTFILES_DIR.is_dir(), reason="clamav-testfiles not installed (apt-get install "
    "clamav-testfiles)")


async def _run_here(func: Any, *args: Any) -> Any:
    return func(*args)


def make_check(endpoints: list[str], **settings: Any) -> ClamAV:
    config = ClamAVSettings(endpoints=tuple(endpoints), **settings)
    return ClamAV(config, CheckContext(config=scanner.config.load(None), run_cpu=_run_here))


def clamscan_argv(db_dir: Path) -> list[str]:
    """amavis's ClamAV-clamscan backup entry, with the tests' own signature database."""
    return ["clamscan", "--stdout", "--no-summary", "-r", f"--database={db_dir}", "{}"]


def make_task(raw: bytes, parts: list[Any] | None = None) -> Task:
    envelope = Envelope(sender="a@b", recipients=(Recipient("c@d"),))
    return Task(mail_id="test", envelope=envelope, raw=raw, parts=parts or [])


def mail(body: str = "Hello, nothing to see here.\n",
         attachment: tuple[str, bytes] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@b", "c@d", "test"
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment[1], maintype="application", subtype="octet-stream",
                           filename=attachment[0])
    return msg.as_bytes()


def scan(check: ClamAV, task: Task) -> list[Hit]:
    return list(asyncio.run(check.run(task)))


@dataclass
class FakePart:
    """Just the attributes of decoders.part.Part that the check reads."""

    path: str
    blob: bytes
    is_leaf: bool = True
    sha256: str = field(init=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.blob).hexdigest()
        self.size = len(self.blob)

    def data(self) -> bytes:
        return self.blob

    def path_string(self) -> str:
        return self.path



def fake_scan(fake: FakeClamd, task: Task, **settings: Any) -> tuple[list[Hit], float]:
    async def go() -> tuple[list[Hit], float]:
        async with fake:
            check = make_check([fake.endpoint], **settings)
            began = time.monotonic()
            hits = list(await check.run(task))
            return hits, time.monotonic() - began
    return asyncio.run(go())

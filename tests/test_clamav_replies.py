"""clamd answers with more than one record: a virus named next to an error record.

clamd sends one record per finding and an ERROR record when a scan could not finish
(``Can't create temporary file ERROR``, ``lstat() failed ... ERROR``). A virus it named
is a virus whatever else the answer says: the error must not turn it into a failure,
which with ``fail_action = "unchecked"`` passes the mail (tagged) to its recipients.
A fake clamd gives the answer, as a real one cannot be made to fail on cue.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import scanner.config
from scanner.checks.base import CheckContext
from scanner.checks.clamav import ClamAV, ClamAVSettings
from scanner.checks.clamd_client import ClamdError, Status, parse_reply
from scanner.task import Envelope, Hit, Recipient, Task
from scanner.testing.clamd import FakeClamd

ERROR = b"stream: Can't create temporary file ERROR\0"
FOUND = b"stream: Some.Virus FOUND\0"


async def _run_here(func: Any, *args: Any) -> Any:
    return func(*args)


def run_check(fake: FakeClamd, **settings: Any) -> list[Hit]:
    async def go() -> list[Hit]:
        async with fake:
            config = ClamAVSettings(endpoints=(fake.endpoint,), **settings)
            check = ClamAV(config, CheckContext(config=scanner.config.load(None),
                                                run_cpu=_run_here))
            envelope = Envelope(sender="a@b.example", recipients=(Recipient("c@d.example"),))
            task = Task(mail_id="replies", envelope=envelope, raw=b"Subject: x\n\nbody\n")
            hits = list(await check.run(task))
            check.close()
            return hits
    return asyncio.run(go())


@pytest.mark.parametrize("answer", [FOUND + ERROR, ERROR + FOUND])
@pytest.mark.parametrize("fail_action", ["tempfail", "unchecked"])
@pytest.mark.parametrize("reuse", [False, True])
def test_a_virus_next_to_an_error_record_is_a_virus(
        tmp_path: Path, answer: bytes, fail_action: str, reuse: bool) -> None:
    """On a kept session only the first record is read: after an error record the
    request is asked again on a connection of its own, read to the end."""
    fake = FakeClamd(tmp_path / "fake.sock", answer)
    hits = run_check(fake, fail_action=fail_action, reuse_connections=reuse)
    assert hits == [Hit("CLAMAV_VIRUS", options=("Some.Virus",))]
    assert fake.requests == (2 if reuse and answer.startswith(ERROR) else 1)


def test_an_error_record_alone_or_with_ok_is_a_failure(tmp_path: Path) -> None:
    assert parse_reply(FOUND + ERROR).status is Status.INFECTED
    for answer in (ERROR, b"stream: OK\0" + ERROR, ERROR + b"stream: OK\0"):
        with pytest.raises(ClamdError, match="Can't create temporary file"):
            parse_reply(answer)
    hits = run_check(FakeClamd(tmp_path / "fake.sock", ERROR), fail_action="unchecked")
    assert [h.symbol for h in hits] == ["CLAMAV_UNCHECKED"]

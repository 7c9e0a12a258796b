"""clamd answers that are not simply "OK" or "FOUND": a virus named next to an error
record, and a whole message clamd did not read (too large), whose inline text must then
be sent on its own.

clamd sends one record per finding and an ERROR record when a scan could not finish
(``Can't create temporary file ERROR``, ``lstat() failed ... ERROR``). A virus it named
is a virus whatever else the answer says: the error must not turn it into a failure,
which with ``fail_action = "unchecked"`` passes the mail (tagged) to its recipients.
A fake clamd gives those answers, as a real one cannot be made to fail on cue; the
size case uses a real clamd.
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


def test_inline_text_is_sent_when_the_whole_message_was_not(tmp_path: Path) -> None:
    """Inline text is left to clamd's reading of the whole message; a message too large
    to send whole (or cut short by clamd) must not leave its inline text unscanned,
    where a virus would pass as merely UNCHECKED."""
    from email.message import EmailMessage

    from scanner.testing.clamd import ClamdInstance, clamd_binary, eicar
    from scanner.testing.tasks import task_from_bytes

    if clamd_binary() is None:
        pytest.skip("clamd not installed (apt-get install clamav-daemon)")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@b.example", "c@d.example", "inline"
    msg.set_content("Look: " + eicar().decode() + "\n", cte="base64")
    msg.add_alternative("<p>" + "padding " * 800 + "</p>", subtype="html")
    raw = msg.as_bytes()
    assert len(raw) > 4096 and eicar() not in raw
    with ClamdInstance(tmp_path / "clamd") as clamd:
        for reuse in (False, True):
            config = ClamAVSettings(endpoints=(clamd.unix_endpoint,), cache_size=0,
                                    stream_max_length=4096, reuse_connections=reuse)
            check = ClamAV(config, CheckContext(config=scanner.config.load(None),
                                                run_cpu=_run_here))
            with task_from_bytes(raw) as task:
                hits = list(asyncio.run(check.run(task)))
            check.close()
            assert [h.symbol for h in hits] == ["CLAMAV_VIRUS"], hits
            assert hits[0].options == ("Eicar-Test-Signature.UNOFFICIAL",)

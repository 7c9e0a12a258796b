"""Retries of a clamd that refuses the connection or hangs up without an answer.

amavis 2.13 (Amavis/AV.pm, ask_daemon_internal) tries a failed clamd socket again, up
to twice per socket, sleeping 1 s and then 6 s each time the list of sockets is used up,
and never past the task's deadline: a clamd restarted by logrotate or freshclam costs
those messages a few seconds, not a tempfail. The check does the same with
``retry_delays`` (default 1 s, 6 s), only for failures before any answer (an answer,
even garbage, means clamd is up: that is CLAMAV_FAIL at once, as in amavis, where the
reply is judged after the retry loop), and stops a little before ``checks.timeout`` so
that the outcome is still the check's own (fail_action honoured).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest

import scanner.config
from scanner.checks.base import CheckContext
from scanner.checks.clamav import ClamAV, ClamAVSettings
from scanner.task import Hit
from scanner.testing.clamd import ClamdInstance, FakeClamd, eicar
from scanner.testing.sink import Sink
from tests.clamav_helpers import EICAR, fake_scan, mail, make_task, needs_clamd
from tests.helpers import handle_at_sink


async def _run_here(func: Any, *args: Any) -> Any:
    return func(*args)


def check_with_budget(endpoints: list[str], checks_timeout: float, **settings: Any) -> ClamAV:
    """A check whose runner gives it ``checks_timeout`` seconds (checks.timeout)."""
    config = scanner.config.load(None)
    config = dataclasses.replace(
        config, checks=dataclasses.replace(config.checks, timeout=checks_timeout))
    return ClamAV(ClamAVSettings(endpoints=tuple(endpoints), cache_size=0, **settings),
                  CheckContext(config=config, run_cpu=_run_here))


class RetryAnnounced(logging.Handler):
    """Sets ``event`` when the client logs that it will try clamd again."""

    def __init__(self, event: asyncio.Event) -> None:
        super().__init__(logging.INFO)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying in" in record.getMessage():
            self.event.set()


async def scan_when_back(check: ClamAV, come_back: Any) -> list[Hit]:
    """Scan EICAR; once the client announces its first retry, ``await come_back()``
    (start clamd). Fails if the scan is over before any retry was announced."""
    announced = asyncio.Event()
    handler = RetryAnnounced(announced)
    logger = logging.getLogger("scanner.checks.clamd")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        scanning = asyncio.ensure_future(check.run(make_task(mail(eicar().decode()))))
        waiting = asyncio.ensure_future(announced.wait())
        await asyncio.wait({scanning, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        assert announced.is_set(), f"no retry; the scan ended as {scanning.result()}"
        await come_back()
        return list(await scanning)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        check.close()


def test_hanging_up_without_an_answer_is_tried_again(tmp_path: Path) -> None:
    answers = iter([None, None, b"stream: Some.Virus FOUND\0"])
    fake = FakeClamd(tmp_path / "fake.sock", lambda payload: next(answers))
    hits, _ = fake_scan(fake, make_task(b"payload"), retry_delays=(0.01, 0.01))
    assert [(h.symbol, h.options) for h in hits] == [("CLAMAV_VIRUS", ("Some.Virus",))]
    assert fake.requests == 3


def test_retries_end_after_the_last_delay(tmp_path: Path) -> None:
    fake = FakeClamd(tmp_path / "fake.sock", None)
    hits, _ = fake_scan(fake, make_task(b"payload"), retry_delays=(0.01, 0.01))
    assert [h.symbol for h in hits] == ["CLAMAV_FAIL"]
    assert fake.requests == 3
    assert hits[0].options[0].count("closed the connection without an answer") == 1
    assert hits[0].options[0].endswith("(3 attempts)")


def test_a_refused_connection_is_tried_again_after_the_delay(tmp_path: Path) -> None:
    """A socket file nobody listens on (clamd killed, not yet started again) refuses
    the connection; clamd comes back during the first delay."""
    path = tmp_path / "clamd.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, not listening: ECONNREFUSED
    fake = FakeClamd(path, b"stream: Some.Virus FOUND\0")

    async def go() -> list[Hit]:
        check = check_with_budget([fake.endpoint], 120.0, retry_delays=(0.5,))

        async def come_back() -> None:
            dead.close()
            path.unlink()
            await fake.__aenter__()

        try:
            return await scan_when_back(check, come_back)
        finally:
            await fake.__aexit__()

    hits = asyncio.run(go())
    assert [h.symbol for h in hits] == ["CLAMAV_VIRUS"] and fake.requests == 1


def test_no_retry_that_would_end_past_the_checks_timeout(tmp_path: Path) -> None:
    check = check_with_budget([f"unix:{tmp_path / 'none.sock'}"], 2.0, retry_delays=(5.0,),
                              fail_action="unchecked")
    began = time.monotonic()
    hits = list(asyncio.run(check.run(make_task(b"payload"))))
    assert time.monotonic() - began < 1.0  # no 5 s sleep that the runner would cut short
    assert [h.symbol for h in hits] == ["CLAMAV_UNCHECKED"]
    assert "cannot connect" in hits[0].options[0]


def test_an_attempt_ends_before_the_checks_timeout(tmp_path: Path) -> None:
    """clamd's own timeout (60 s) is longer than the check's time (checks.timeout 2 s):
    the check still gives up by itself, so fail_action = "unchecked" holds instead of
    the runner's CLAMAV_FAIL for a timed-out check."""
    fake = FakeClamd(tmp_path / "fake.sock", hang=True)

    async def go() -> tuple[list[Hit], float]:
        async with fake:
            check = check_with_budget([fake.endpoint], 2.0, fail_action="unchecked")
            began = time.monotonic()
            async with asyncio.timeout(2.0):  # what the runner does
                hits = list(await check.run(make_task(b"payload")))
            return hits, time.monotonic() - began

    hits, elapsed = asyncio.run(go())
    assert [h.symbol for h in hits] == ["CLAMAV_UNCHECKED"]
    assert "deadline" in hits[0].options[0] and 1.5 < elapsed < 2.0
    assert fake.requests == 1  # a timeout is not retried: clamd is there but busy


@needs_clamd
def test_a_clamd_restarted_during_the_scan_is_waited_for(tmp_path: Path) -> None:
    """A real clamd is stopped (socket gone), a scan starts and fails to connect; clamd
    is started again when the client announces its retry: the virus is found."""
    with ClamdInstance(tmp_path) as own:
        check = check_with_budget([own.unix_endpoint], 120.0)
        own.stop()

        async def come_back() -> None:
            await asyncio.to_thread(own.start)

        hits = asyncio.run(scan_when_back(check, come_back))
    assert [(h.symbol, h.options) for h in hits] == [("CLAMAV_VIRUS", (EICAR,))]
    assert check.client.connections == 2  # the refused one, then the answered one


@pytest.mark.parametrize(("answer", "reuse"), [
    (b"COMMAND READ TIMED OUT\0", False), (b"COMMAND READ TIMED OUT\0", True),
    (b"UNKNOWN COMMAND\0", False), (b"UNKNOWN COMMAND\0", True),
    (b"stream: Eicar-Test-Sig", False),  # cut off: clamd closed in the middle
])
def test_odd_answers_fail_at_once_never_clean(tmp_path: Path, answer: bytes,
                                              reuse: bool) -> None:
    """clamd's answers to a slow or unknown command, and a reply cut off mid-way (clamd
    closed the connection), are failures, not retried (clamd answered), on a
    connection of its own as on a kept-open session."""
    fake = FakeClamd(tmp_path / "fake.sock", answer)
    hits, _ = fake_scan(fake, make_task(b"payload"), reuse_connections=reuse)
    assert [h.symbol for h in hits] == ["CLAMAV_FAIL"]
    assert fake.requests == 1


def test_a_clamd_that_stays_down_costs_the_retries_once_per_retry_after(tmp_path: Path
                                                                        ) -> None:
    """After a whole retry round found clamd unreachable, the next messages get one
    attempt each (no delays) until retry_after has passed; then a message retries
    again. The error names each failure once, with the number of attempts."""
    from scanner.checks.clamd_client import ClamdClient, ClamdError

    client = ClamdClient([f"unix:{tmp_path / 'missing.ctl'}"], retry_delays=(0.05, 0.05),
                         retry_after=0.5)
    attempts: list[float] = []
    real = client._attempt

    async def counted(*args: Any) -> Any:
        attempts.append(time.monotonic())
        return await real(*args)

    client._attempt = counted  # type: ignore[method-assign]

    async def scan() -> str:
        with pytest.raises(ClamdError) as failed:
            await client.instream(b"x")
        return str(failed.value)

    first = asyncio.run(scan())
    assert len(attempts) == 3 and first.endswith("(3 attempts)")
    assert first.count("cannot connect") == 1
    asyncio.run(scan())
    assert len(attempts) == 4  # given up: one attempt, no delays
    time.sleep(0.6)
    asyncio.run(scan())
    assert len(attempts) == 7  # retry_after passed: a full round again
    client.close()


def test_a_connect_that_times_out_is_retried(monkeypatch, tmp_path: Path) -> None:
    """clamd's listen backlog full: the connection is never completed. That is a
    failure before any answer, tried again after the delays as amavis does."""
    import scanner.checks.clamd_client as clamd_client
    from scanner.checks.clamd_client import ClamdClient, ClamdError

    async def never(*_args: Any) -> Any:
        await asyncio.sleep(60)

    monkeypatch.setattr(clamd_client, "open_socket", never)
    monkeypatch.setattr(clamd_client.Endpoint, "open", never)
    client = ClamdClient([f"unix:{tmp_path / 'busy.ctl'}"], connect_timeout=0.05,
                         retry_delays=(0.01, 0.01), reuse=False)

    async def scan() -> str:
        with pytest.raises(ClamdError) as failed:
            await client.instream(b"x")
        return str(failed.value)

    text = asyncio.run(scan())
    assert "connect timed out" in text and text.endswith("(3 attempts)"), text
    client.close()


def test_retries_end_before_the_messages_own_deadline(sink: Sink, tmp_path: Path) -> None:
    """The message's time (server.message_timeout, 5 s) is mostly spent unpacking
    (3 s) when the check starts: the 6 s retry no longer fits in it, though it would
    in checks.timeout (120 s). The check gives up by itself (fail_action "unchecked":
    UNCHECKED, delivered), as amavis's retries stop at the task's deadline
    (Amavis/AV.pm, get_deadline), instead of the whole message timing out (451)."""
    from decoders.unpack import unpack

    path = tmp_path / "clamd.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, not listening: every attempt is refused
    config = scanner.config.loads(
        '[server]\nmessage_timeout = 5.0\n[checks]\ntimeout = 120.0\n'
        '[quarantine]\nampdp_socket = ""\n', "t.toml")
    check = ClamAV(ClamAVSettings(endpoints=(f"unix:{path}",), cache_size=0,
                                  fail_action="unchecked"),
                   CheckContext(config=config, run_cpu=_run_here))

    async def slow_unpack(func: Any, *args: Any) -> Any:
        if func is unpack:
            await asyncio.sleep(3.0)  # stands for a slow unpack, not synchronisation
        return func(*args)

    task = make_task(mail())
    task.log_id = "00001-01"
    try:
        replies = handle_at_sink(config, [check], task, sink.port, run_cpu=slow_unpack)
    finally:
        check.close()
        dead.close()
    assert replies[0].startswith("250"), replies
    assert [h.symbol for h in task.hits if h.source == "clamav"] == ["CLAMAV_UNCHECKED"]
    assert len(sink.received) == 1

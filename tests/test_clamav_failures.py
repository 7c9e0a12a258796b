"""The clamav check when clamd fails: dead, stopped, restarted, too small a
StreamMaxLength, limit alerts, and a fake clamd that hangs, hangs up or answers garbage.
Whatever happens, the mail is never called clean."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from scanner.checks.clamav import ClamAV
from scanner.checks.clamd_client import (
    ClamdClient,
    ClamdError,
    Status,
)
from scanner.task import Hit
from scanner.testing.clamd import TESTFILES_DIR, ClamdInstance, FakeClamd, eicar
from tests.clamav_helpers import (
    FakePart,
    fake_scan,
    mail,
    make_check,
    make_task,
    needs_clamd,
    needs_testfiles,
    scan,
)


@needs_clamd
@pytest.mark.parametrize(("clamd_limit", "size", "count"), [
    (64 * 1024, 2_000_000, 20),  # sent on a connection of its own
    (16 * 1024, 40_000, 50),     # small enough for a kept-open session
])
def test_clamd_size_limit_is_unchecked_every_time(
        tmp_path: Path, clamd_limit: int, size: int, count: int) -> None:
    """The check believes clamd takes 25 MiB, clamd takes less: clamd answers "size
    limit exceeded" and closes while we still send. That answer must be read every
    time, over either socket, as UNCHECKED (the same as data over stream_max_length),
    never CLAMAV_FAIL (a tempfail that would come back on every retry). Before the
    client read on a socket of its own, 67 of 100 two-megabyte scans over the Unix
    socket and 30 of 100 over TCP lost the answer in the failed write and failed; on a
    new session, 1 and 3 of 30 of the 40 kB ones did."""
    with ClamdInstance(tmp_path, stream_max_length=clamd_limit, tcp=True) as small:
        for endpoint in small.endpoints:
            check = make_check([endpoint], cache_size=0, retry_delays=())

            async def scans(check: ClamAV = check) -> list[list[Hit]]:
                return [list(await check.run(make_task(mail("y" * size + str(i)))))
                        for i in range(count)]

            for hits in asyncio.run(scans()):
                assert [h.symbol for h in hits] == ["CLAMAV_UNCHECKED"], (endpoint, hits)
                assert "size limit exceeded" in hits[0].options[0]
            assert len(check.cache) == 0


@needs_clamd
@needs_testfiles
def test_scan_limit_alert_is_unchecked_not_virus(tmp_path: Path) -> None:
    deep = (TESTFILES_DIR / "clam_cache_emax.tgz").read_bytes()
    with ClamdInstance(tmp_path, extra={"AlertExceedsMax": "yes"}) as alerting:
        hits = scan(make_check([alerting.unix_endpoint]), make_task(deep))
    assert [h.symbol for h in hits] == ["CLAMAV_UNCHECKED"]
    assert "Heuristics.Limits.Exceeded.MaxRecursion" in hits[0].options[0]


def test_limit_alerts_as_unchecked_is_a_documented_difference_from_amavis() -> None:
    """amavis would call the alert above a virus (INFECTED): any FOUND name is one to
    it. UNCHECKED is a deliberate choice, so README's ClamAV section must say so."""
    readme = (Path(__file__).parent.parent / "README.md").read_text("utf-8")
    section = readme[readme.index("\n## ClamAV\n"):]
    section = section[:section.index("\n## ", 1)]
    paragraph = next(p for p in section.split("\n\n") if "AlertExceedsMax yes" in p)
    assert "differs from amavis deliberately" in paragraph
    assert "INFECTED" in paragraph and "UNCHECKED" in paragraph


@needs_clamd
def test_cache_avoids_second_request(tmp_path: Path) -> None:
    task = make_task(mail(eicar().decode()))
    with ClamdInstance(tmp_path) as own:
        check = make_check([own.unix_endpoint], retry_delays=())
        first = scan(check, task)
        own.stop()
        assert not own.ping()
        assert scan(check, task) == first
        assert check.client.requests == 1
        assert [h.symbol for h in scan(check, make_task(mail("new"), []))] == ["CLAMAV_FAIL"]


@needs_clamd
def test_stopped_or_killed_clamd_fails(tmp_path: Path) -> None:
    with ClamdInstance(tmp_path) as own:
        check = make_check([own.unix_endpoint], cache_size=0, retry_delays=())
        assert scan(check, make_task(mail())) == []
        own.kill()  # the socket file stays behind: connection refused
        hits = scan(check, make_task(mail()))
        assert [h.symbol for h in hits] == ["CLAMAV_FAIL"]
        own.start()
        own.stop()  # clean shutdown removes the socket: no such file
        assert [h.symbol for h in scan(check, make_task(mail()))] == ["CLAMAV_FAIL"]
        unchecked = make_check([own.unix_endpoint], fail_action="unchecked",
                               retry_delays=())
        hits = scan(unchecked, make_task(mail()))
        assert [h.symbol for h in hits] == ["CLAMAV_UNCHECKED"]
        assert hits[0].options[0].startswith("clamd failed:")
        own.restart()
        assert scan(check, make_task(mail())) == []


def test_a_clamd_outage_is_logged_once_per_retry_interval(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """While clamd is down every request fails; the log gets the first failure, then a
    count at most every ``retry_after`` seconds, and a line when clamd answers again."""
    path = tmp_path / "clamd.sock"

    async def go(retry_after: float, fails: int) -> None:
        client = ClamdClient([f"unix:{path}"], retry_after=retry_after, retry_delays=())
        for _ in range(fails):
            with pytest.raises(ClamdError):
                await client.instream(b"data")
        async with FakeClamd(path):
            assert (await client.instream(b"data")).status is Status.CLEAN
            client.close()

    caplog.set_level(logging.WARNING, logger="scanner.checks.clamd")
    asyncio.run(go(3600.0, 5))
    lines = [r.getMessage() for r in caplog.records if r.name == "scanner.checks.clamd"]
    assert len(lines) == 2, lines
    assert "cannot connect" in lines[0] and "more failed" not in lines[0]
    assert lines[1].endswith("answering again (4 more failed requests since the last report)")
    caplog.clear()
    asyncio.run(go(0.0, 3))  # no interval: every failure is reported
    lines = [r.getMessage() for r in caplog.records if r.name == "scanner.checks.clamd"]
    assert sum("cannot connect" in m for m in lines) == 3 and "answering again" in lines[-1]


# --- a fake clamd for failure modes -----------------------------------------------


@pytest.mark.parametrize("answer", [b"hello there\0", b"stream: bogus\0", b"\0" * 3,
                                    b"Can't allocate memory ERROR\0", None])
def test_bad_answers_fail(tmp_path: Path, answer: bytes | None) -> None:
    fake = FakeClamd(tmp_path / "fake.sock", answer)
    hits, _ = fake_scan(fake, make_task(mail()), retry_delays=(0.01, 0.01))
    assert [h.symbol for h in hits] == ["CLAMAV_FAIL"]
    # an ERROR record read on a kept session is asked again alone and read to the end
    # (a virus may be named after it: tests/test_clamav_replies.py); an answer is never
    # retried (clamd is up), hanging up without one is, twice (as amavis does)
    expected = 2 if answer and answer.endswith(b" ERROR\0") else 1
    assert fake.requests == (3 if answer is None else expected)


def test_hanging_clamd_fails_within_timeout(tmp_path: Path) -> None:
    fake = FakeClamd(tmp_path / "fake.sock", hang=True)
    hits, elapsed = fake_scan(fake, make_task(mail()), timeout=0.5)
    assert [h.symbol for h in hits] == ["CLAMAV_FAIL"]
    assert "0.5" in hits[0].options[0]
    assert 0.4 < elapsed < 3.0


def test_failures_are_not_cached_and_parts_deduplicated(tmp_path: Path) -> None:
    raw = mail()
    parts = [FakePart("0", raw), FakePart("1", b"a"), FakePart("2", b"a"), FakePart("3", b"")]
    fake = FakeClamd(tmp_path / "fake.sock", b"stream: OK\0")
    assert fake_scan(fake, make_task(raw, parts))[0] == []
    assert fake.payloads == [raw, b"a"]
    broken = FakeClamd(tmp_path / "broken.sock", b"nonsense\0")

    async def twice() -> int:
        async with broken:
            check = make_check([broken.endpoint])
            for _ in range(2):
                assert [h.symbol for h in await check.run(make_task(raw))] == ["CLAMAV_FAIL"]
            return len(check.cache)
    assert asyncio.run(twice()) == 0
    assert broken.requests == 2


def test_chunking(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 40
    fake = FakeClamd(tmp_path / "fake.sock", b"stream: OK\0")
    fake_scan(fake, make_task(blob), chunk_size=1024)
    assert fake.payloads == [blob]


@pytest.mark.parametrize("reuse", [False, True])
def test_virus_outranks_later_failure(tmp_path: Path, reuse: bool) -> None:
    def answer(payload: bytes) -> bytes | None:
        return b"stream: Some.Virus FOUND\0" if payload == b"first" else None

    fake = FakeClamd(tmp_path / "fake.sock", answer)
    task = make_task(b"first", [FakePart("2", b"second")])
    hits, _ = fake_scan(fake, task, first_infected_stops_scan=False, reuse_connections=reuse,
                        retry_delays=())
    assert hits == [Hit("CLAMAV_VIRUS", options=("Some.Virus",))]
    assert fake.requests == 2  # a session that answered "FOUND" is not reused
    alone, _ = fake_scan(FakeClamd(tmp_path / "f2.sock", answer), make_task(b"second"),
                         retry_delays=())
    assert [h.symbol for h in alone] == ["CLAMAV_FAIL"]

"""The clamav check's backup scanner (``backup_command``, amavis's @av_scanners_backup):
with clamd stopped, a real clamscan on the test signature database finds the virus and
passes clean mail; when the backup fails too (no database, no program, too slow) the
outcome is CLAMAV_FAIL as without it; with clamd up it never runs. The files it gets are
the pieces clamd would have got, in a private directory removed afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import select
import sys
from pathlib import Path
from typing import Any

import pytest

import scanner.config
from scanner.checks.base import CheckContext
from scanner.checks.clamav import UNCHECKED, ClamAV, ClamAVSettings
from scanner.checks.clamav_backup import expand, parse_output
from scanner.checks.clamd_client import ClamdError, ScanReply, Status
from scanner.errors import ConfigError
from scanner.task import Hit
from scanner.testing.clamd import ClamdInstance, FakeClamd, eicar
from tests.clamav_helpers import (
    EICAR,
    FakePart,
    clamscan_argv,
    mail,
    make_check,
    make_task,
    needs_clamd,
    needs_clamscan,
    scan,
)

DEAD = "unix:/nonexistent/clamd.ctl"


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Any:
    instance = ClamdInstance(tmp_path_factory.mktemp("clamd"))
    instance.start()
    yield instance
    instance.close()


def test_clamscan_output_is_read_per_file() -> None:
    out = ("/d/p001: Eicar-Test-Signature.UNOFFICIAL FOUND\n/d/p000: OK\n"
           "/d/p002: Empty file\nWARNING: /d/p003: Can't access file\n")
    replies = parse_output(out, ["/d/p000", "/d/p001", "/d/p002", "/d/p003"], 2)
    assert replies[:3] == [ScanReply(Status.CLEAN),
                           ScanReply(Status.INFECTED, ("Eicar-Test-Signature.UNOFFICIAL",)),
                           ScanReply(Status.CLEAN)]
    assert isinstance(replies[3], ClamdError)


@pytest.mark.parametrize(("status", "clean"), [(0, True), (1, True), (2, False)])
def test_a_file_without_a_line_is_clean_only_without_errors(status: int, clean: bool
                                                             ) -> None:
    """``--infected`` prints infected files only; exit status 2 says something failed."""
    reply = parse_output("/d/p001: X FOUND\n", ["/d/p000", "/d/p001"], status)[0]
    assert (reply == ScanReply(Status.CLEAN)) is clean


def test_placeholders_expand_as_amavis_does() -> None:
    argv = ["clamscan", "-r", "{}", "--", "{}/*"]
    assert expand(argv, "/t/parts", ["p000", "p001"]) == [
        "clamscan", "-r", "/t/parts", "--", "/t/parts/p000", "/t/parts/p001"]


@pytest.mark.parametrize("argv", [["clamscan", "--stdout"], ["", "{}"]])
def test_a_command_without_program_or_placeholder_is_refused(argv: list[str]) -> None:
    with pytest.raises(ConfigError, match="backup_command"):
        make_check([DEAD], backup_command=tuple(argv))


@needs_clamd
@needs_clamscan
def test_clamd_up_backup_not_run(clamd: ClamdInstance) -> None:
    check = make_check([clamd.unix_endpoint], backup_command=clamscan_argv(clamd.db_dir))
    assert scan(check, make_task(mail())) == []
    hits = scan(check, make_task(mail(attachment=("e.com", eicar()))))
    assert [(h.symbol, h.options) for h in hits] == [("CLAMAV_VIRUS", (EICAR,))]
    assert check.backup is not None and check.backup.runs == 0


@needs_clamd
@needs_clamscan
def test_clamd_stopped_backup_finds_the_virus_and_passes_clean_mail(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with ClamdInstance(tmp_path / "clamd") as own:
        check = make_check([own.unix_endpoint], retry_delays=(), cache_size=0,
                           backup_command=clamscan_argv(own.db_dir))
        own.stop()
        caplog.set_level(logging.INFO, "scanner.checks.clamav")
        hits = scan(check, make_task(mail(attachment=("e.com", eicar()))))
        assert [(h.symbol, h.options) for h in hits] == [("CLAMAV_VIRUS", (EICAR,))]
        assert f"{EICAR} in message (backup clamscan)" in caplog.text
        # clamd is now remembered as down (one attempt per message, no retries): the
        # backup still runs for every message, as amavis's does
        assert scan(check, make_task(mail())) == []
        assert "scanned by backup clamscan, clamd gave no answer" in caplog.text
        # a virus only in a decoded part (clamscan would not find it in the raw mail)
        part = FakePart("1/2", b"zz" + eicar())
        hits = scan(check, make_task(mail(), [part]))
        assert [(h.symbol, h.options, h.part) for h in hits] == [
            ("CLAMAV_VIRUS", (EICAR,), "1/2")]
        assert check.backup is not None and check.backup.runs == 3


@needs_clamscan
@pytest.mark.parametrize("argv", [
    ["clamscan", "--stdout", "--no-summary", "--database=/nonexistent/db", "{}"],
    ["/nonexistent/clamscan", "{}"],
])
def test_backup_failing_too_is_clamav_fail(argv: list[str]) -> None:
    check = make_check([DEAD], retry_delays=(), backup_command=tuple(argv))
    hits = scan(check, make_task(mail(attachment=("e.com", eicar()))))
    assert [h.symbol for h in hits] == ["CLAMAV_FAIL"]
    assert "cannot connect" in hits[0].options[0]
    assert "; backup clamscan: " in hits[0].options[0]
    unchecked = make_check([DEAD], retry_delays=(), backup_command=tuple(argv),
                           fail_action="unchecked")
    assert [h.symbol for h in scan(unchecked, make_task(mail()))] == ["CLAMAV_UNCHECKED"]


def _check_with_timeout(timeout: float, **settings: Any) -> ClamAV:
    config = scanner.config.load(None)
    config = dataclasses.replace(config, checks=dataclasses.replace(config.checks,
                                                                    timeout=timeout))
    return ClamAV(ClamAVSettings(endpoints=(DEAD,), retry_delays=(), **settings),
                  CheckContext(config=config, run_cpu=lambda f, *a: f(*a)))


def test_a_slow_backup_is_killed_with_its_process_group_at_the_deadline(
        tmp_path: Path) -> None:
    """The fake scanner starts a child of its own and waits: at the check's deadline the
    whole group is killed and the outcome is CLAMAV_FAIL."""
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    check = _check_with_timeout(2.0, backup_command=("/bin/sh", "-c", script, "sh", "{}"))

    async def go() -> tuple[list[Any], float]:
        began = asyncio.get_running_loop().time()
        hits = list(await check.run(make_task(mail())))
        return hits, asyncio.get_running_loop().time() - began

    hits, took = asyncio.run(go())
    assert [h.symbol for h in hits] == ["CLAMAV_FAIL"]
    assert "backup sh: no answer before the check's deadline" in hits[0].options[0]
    assert took < 2.0
    child = int(pid_file.read_text())
    try:
        pidfd = os.pidfd_open(child)
    except ProcessLookupError:
        return  # gone and reaped already
    try:  # readable once the process has exited
        assert select.select([pidfd], [], [], 10.0)[0], "the scanner's child survived"
    finally:
        os.close(pidfd)


def test_backup_gets_the_pieces_clamd_gets_in_a_private_directory(tmp_path: Path) -> None:
    """The same task scanned by a fake clamd (which records each INSTREAM) and, with clamd
    unreachable, by a fake backup that copies what it was given: the same bytes in the
    same order (duplicates once, too large pieces in neither), in a 0700 directory that
    is gone afterwards."""
    big = FakePart("1/4", b"B" * 2000)
    parts = [FakePart("1/1", b"first part"), FakePart("1/2", b"first part"),
             FakePart("1/3", b"another part"), big]
    task = make_task(mail(), parts)
    fake = FakeClamd(tmp_path / "fake.sock")

    async def via_clamd() -> list[Any]:
        async with fake:
            check = make_check([fake.endpoint], stream_max_length=1000)
            return list(await check.run(task))

    assert asyncio.run(via_clamd()) == [
        Hit(UNCHECKED, options=("1/4: 2000 bytes > stream_max_length",))]
    out = tmp_path / "seen"
    script = (f'mkdir {out}; stat -c %a "$(dirname "$1")" "$1" "$TMPDIR" > {out}/modes; '
              f'echo "$1" > {out}/dir; cp "$1"/* {out}/')
    check = make_check([DEAD], retry_delays=(), stream_max_length=1000,
                       backup_command=("/bin/sh", "-c", script, "sh", "{}"))
    hits = scan(check, task)
    assert hits == [Hit(UNCHECKED, options=("1/4: 2000 bytes > stream_max_length",))]
    copies = sorted(out.glob("p*"))
    assert [p.read_bytes() for p in copies] == fake.payloads
    assert [p.name for p in copies] == ["p000", "p001", "p002"]
    assert (out / "modes").read_text().split() == ["700", "700", "700"]
    assert not Path((out / "dir").read_text().strip()).parent.exists()


def test_probe_names_the_backup(tmp_path: Path) -> None:
    check = make_check([DEAD], backup_command=(sys.executable, "{}"))
    note = asyncio.run(check.probe())
    assert note is not None and "scanned by backup python" in note
    missing = make_check([DEAD], backup_command=("/nonexistent/clamscan", "{}"))
    assert "not found" in (asyncio.run(missing.probe()) or "")


def test_backup_names_are_read_as_clamds_and_marked(tmp_path: Path) -> None:
    """A spam name is CLAMAV_SPAM and a limit alert CLAMAV_UNCHECKED, as from clamd; the
    alert's option says that the backup reported it."""
    script = ('for f in "$1"/*; do echo "$f: Heuristics.Phishing.Email.SpoofedDomain FOUND"; '
              'echo "$f: Heuristics.Limits.Exceeded.MaxFileSize FOUND"; done; exit 1')
    check = make_check([DEAD], retry_delays=(),
                       backup_command=("/bin/sh", "-c", script, "sh", "{}"))
    hits = scan(check, make_task(mail()))
    assert [(h.symbol, h.options) for h in hits] == [
        ("CLAMAV_UNCHECKED", ("message: backup sh: Heuristics.Limits.Exceeded.MaxFileSize",)),
        ("CLAMAV_SPAM", ("Heuristics.Phishing.Email.SpoofedDomain",))]


def test_one_backup_run_at_a_time_per_worker(tmp_path: Path) -> None:
    """clamscan loads the whole database each run: two messages at once in one worker
    get their backup scans one after the other (the fake fails if another one runs)."""
    lock = tmp_path / "running"
    script = f"mkdir {lock} || exit 2; sleep 0.3; rmdir {lock}"
    check = make_check([DEAD], retry_delays=(),
                       backup_command=("/bin/sh", "-c", script, "sh", "{}"))

    async def go() -> list[list[Any]]:
        runs = [check.run(make_task(mail(f"message {i}"))) for i in range(3)]
        return [list(hits) for hits in await asyncio.gather(*runs)]

    assert asyncio.run(go()) == [[], [], []]
    assert check.backup is not None and check.backup.runs == 3


def test_a_clamd_that_never_answers_leaves_the_backup_time_to_scan(tmp_path: Path) -> None:
    """clamd accepts the request and never answers (stuck or overloaded): with a backup
    command, clamd gets half of the check's time and the backup the rest, so the message
    is scanned (clean here) instead of CLAMAV_FAIL with no time left for the backup."""
    ok_each = ("/bin/sh", "-c", 'for f in "$@"; do echo "$f: OK"; done', "sh", "{}/*")

    async def go() -> tuple[list[Any], float]:
        async with FakeClamd(tmp_path / "hang.sock", hang=True) as fake:
            check = _check_with_timeout(4.0, backup_command=ok_each)
            check = ClamAV(dataclasses.replace(check.settings, endpoints=(fake.endpoint,)),
                           check.context)
            began = asyncio.get_running_loop().time()
            hits = list(await check.run(make_task(mail())))
            return hits, asyncio.get_running_loop().time() - began

    hits, took = asyncio.run(go())
    assert hits == [], hits
    assert took < 4.0

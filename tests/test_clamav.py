"""The clamav check and its clamd client, against a private clamd and a fake one.

The real-clamd tests start ``scanner.testing.clamd.ClamdInstance`` (a tiny, test-owned
signature database; no freshclam) and are skipped, visibly, when clamd is missing.
Failure modes (hanging, garbage, hanging up) use ``FakeClamd``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import scanner.config
from decoders.unpack import unpack
from scanner.checks.base import CheckContext
from scanner.checks.clamav import ClamAV, ClamAVSettings, covered_by_message
from scanner.checks.clamd_client import (
    ClamdClient,
    ClamdError,
    Endpoint,
    Status,
    parse_endpoint,
    parse_reply,
)
from scanner.config.schema import build
from scanner.errors import ConfigError
from scanner.scores import load_scores
from scanner.task import Envelope, Hit, Recipient, Task
from scanner.testing.clamd import (
    TESTFILES_DIR,
    ClamdInstance,
    FakeClamd,
    clamd_binary,
    eicar,
)

EICAR = "Eicar-Test-Signature.UNOFFICIAL"
TEST_FILE = "ClamAV-Test-File.UNOFFICIAL"
MISSED_IN_MAIL = {"clam_cache_emax.tgz"}
"""Test files clamd does not find inside a mail with MaxRecursion 16 (Debian's value):
clam.exe sits about 17 levels deep (nested tar.gz) plus the MIME and base64 layers."""

needs_clamd = pytest.mark.skipif(clamd_binary() is None,
                                 reason="clamd not installed (apt-get install clamav-daemon)")
needs_testfiles = pytest.mark.skipif(
    not TESTFILES_DIR.is_dir(), reason="clamav-testfiles not installed (apt-get install "
    "clamav-testfiles)")


async def _run_here(func: Any, *args: Any) -> Any:
    return func(*args)


def make_check(endpoints: list[str], **settings: Any) -> ClamAV:
    config = ClamAVSettings(endpoints=tuple(endpoints), **settings)
    return ClamAV(config, CheckContext(config=scanner.config.load(None), run_cpu=_run_here))


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


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdInstance]:
    if clamd_binary() is None:
        pytest.skip("clamd not installed (apt-get install clamav-daemon)")
    instance = ClamdInstance(tmp_path_factory.mktemp("clamd"), tcp=True)
    instance.start()
    print(f"private clamd started in {instance.startup_seconds:.3f} s")
    yield instance
    instance.close()


# --- protocol pieces --------------------------------------------------------------



def test_a_private_clamd_can_keep_its_temporary_files_on_another_file_system(tmp_path):
    (tmp_path / "fast").mkdir()
    clamd = ClamdInstance(tmp_path / "clamd", tmp_root=tmp_path / "fast")
    assert clamd.tmp_dir.parent == tmp_path / "fast"
    assert f"TemporaryDirectory {clamd.tmp_dir}\n" in clamd.config_text()
    clamd.close()  # never started: only its directories go
    assert not clamd.tmp_dir.exists()
    default = ClamdInstance(tmp_path / "plain")
    assert default.tmp_dir == tmp_path / "plain" / "tmp"


def test_parse_endpoint() -> None:
    assert parse_endpoint("unix:/run/clamav/clamd.ctl") == Endpoint("unix", "/run/clamav/clamd.ctl")
    assert parse_endpoint("tcp:127.0.0.1:3310") == Endpoint("tcp", "127.0.0.1", 3310)
    assert parse_endpoint("tcp:[::1]:3310") == Endpoint("tcp", "::1", 3310)
    assert str(Endpoint("tcp", "::1", 3310)) == "tcp:[::1]:3310"
    for bad in ("", "/run/clamd.ctl", "unix:relative", "tcp:host", "tcp:host:0", "udp:a:1"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)


def test_parse_reply() -> None:
    assert parse_reply(b"stream: OK\0").status is Status.CLEAN
    found = parse_reply(b"stream: Win.Test.EICAR_HDB-1 FOUND\0")
    assert (found.status, found.names) == (Status.INFECTED, ("Win.Test.EICAR_HDB-1",))
    extended = parse_reply(b"stream: Foo.Bar(44d88612fea8a8f36de82e1278abb02f:68) FOUND\0")
    assert extended.names == ("Foo.Bar",)
    several = parse_reply(b"stream: A FOUND\0stream: B FOUND\0stream: A FOUND\0")
    assert several.names == ("A", "B")
    assert parse_reply(b"INSTREAM size limit exceeded. ERROR\0").status is Status.TOO_LARGE
    for bad in (b"", b"\0", b"Can't allocate memory ERROR\0", b"PONG\0", b"stream: maybe\0",
                b"\xff\xfe garbage", b"stream:  FOUND\0"):
        with pytest.raises(ClamdError):
            parse_reply(bad)


def test_settings_are_validated() -> None:
    built = build(ClamAVSettings, {"endpoints": ["tcp:127.0.0.1:3310"], "fail_action":
                                   "unchecked"}, "checks.settings.clamav", "t.toml")
    assert built.endpoints == ("tcp:127.0.0.1:3310",) and built.fail_action == "unchecked"
    assert ClamAVSettings().endpoints == ("unix:/var/run/clamav/clamd.ctl",)
    assert ClamAVSettings().stream_max_length == 25 * 1024 * 1024
    with pytest.raises(ConfigError, match="fail_action"):
        build(ClamAVSettings, {"fail_action": "pass"}, "checks.settings.clamav", "t.toml")
    with pytest.raises(ConfigError, match="endpoints"):
        make_check(["localhost:3310"])


def test_score_table_lists_the_symbols() -> None:
    table = load_scores()
    assert set(ClamAV.symbols) <= set(table.symbols)
    assert table.get("CLAMAV_VIRUS").category == "VIRUS"
    assert table.get("CLAMAV_UNCHECKED").category == "UNCHECKED"
    assert table.get("CLAMAV_FAIL").tempfail


# --- the real clamd ---------------------------------------------------------------


@needs_clamd
def test_private_clamd_starts_fast(clamd: ClamdInstance) -> None:
    assert clamd.ping()
    assert clamd.startup_seconds is not None and clamd.startup_seconds < 10
    assert asyncio.run(ClamdClient([clamd.tcp_endpoint]).command("PING")) == "PONG"


@needs_clamd
def test_eicar_in_plain_body(clamd: ClamdInstance) -> None:
    body = "Look at this:\n" + eicar().decode() + "\n"
    hits = scan(make_check(clamd.endpoints), make_task(mail(body)))
    assert hits == [Hit("CLAMAV_VIRUS", options=(EICAR,), part=None)]


@needs_clamd
def test_clean_mail(clamd: ClamdInstance) -> None:
    assert scan(make_check(clamd.endpoints), make_task(mail())) == []


@needs_clamd
@needs_testfiles
def test_clamav_testfiles_attached(clamd: ClamdInstance) -> None:
    files = sorted(p for p in TESTFILES_DIR.iterdir() if p.is_file())
    assert len(files) >= 40
    check = make_check(clamd.endpoints)
    missed = set()
    for path in files:
        hits = scan(check, make_task(mail(attachment=(path.name, path.read_bytes()))))
        if not hits:
            missed.add(path.name)
            continue
        assert hits == [Hit("CLAMAV_VIRUS", options=(TEST_FILE,), part=None)], path.name
    assert missed == MISSED_IN_MAIL


@needs_clamd
@needs_testfiles
def test_decoded_parts_are_scanned_too(clamd: ClamdInstance) -> None:
    outer = (TESTFILES_DIR / "clam_cache_emax.tgz").read_bytes()
    inner = (TESTFILES_DIR / "clam.exe").read_bytes()
    raw = mail(attachment=("deep.tgz", outer))
    parts = [FakePart("1", b"text part\n"), FakePart("2", outer), FakePart("2/9", inner)]
    hits = scan(make_check(clamd.endpoints), make_task(raw, parts))
    assert hits == [Hit("CLAMAV_VIRUS", options=(TEST_FILE,), part="2/9")]


def decoded(raw: bytes) -> Any:
    """The message through the real decoders (the caller closes the result)."""
    return unpack(raw)


def mixed_mail() -> bytes:
    """Inline text and HTML, a text attachment, a zip with a text file, an attached mail."""
    inner = EmailMessage()
    inner["Subject"] = "inner"
    inner.set_content("the attached mail's own text\n")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@b", "c@d", "mixed"
    msg.set_content("inline text, non-ASCII too: \u00e9t\u00e9\n")
    msg.add_alternative("<html><body><p>inline HTML</p></body></html>", subtype="html")
    msg.add_attachment("a named text file\n", filename="notes.txt")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("inside.txt", "text inside an archive\n")
    msg.add_attachment(buf.getvalue(), maintype="application", subtype="zip",
                       filename="x.zip")
    msg.add_attachment(inner)
    return msg.as_bytes()


def test_inline_text_of_the_mime_structure_counts_as_covered() -> None:
    result = decoded(mixed_mail())
    try:
        by_index = {p.index: p for p in result.parts}
        covered = sorted((p.name or "", p.declared_type or "", covered_by_message(p, by_index))
                         for p in result.parts)
    finally:
        result.close()
    assert covered == [
        ("", "", True),                    # the message itself (scanned whole anyway)
        ("", "message/rfc822", True),      # the attached mail, a MIME container
        ("", "text/html", True),           # inline HTML
        ("", "text/plain", True),          # the inline text
        ("", "text/plain", True),          # the attached mail's text
        ("inside.txt", "", False),         # from the zip decoder, not from MIME
        ("notes.txt", "text/plain", False),  # an attachment is always sent
        ("x.zip", "application/zip", False),
    ]


def test_flags_or_binary_content_are_never_covered() -> None:
    result = decoded(mail("just text\n"))
    try:
        by_index = {p.index: p for p in result.parts}
        leaf = next(p for p in result.parts if p.is_leaf)
        assert covered_by_message(leaf, by_index)
        leaf.flags.add("corrupt")
        assert not covered_by_message(leaf, by_index)
        leaf.flags.clear()
        by_index[leaf.parent].flags.add("ambiguous")
        assert not covered_by_message(leaf, by_index)
        by_index[leaf.parent].flags.clear()
        leaf.detected_type = "exe"  # declared text, detected otherwise: sent
        assert not covered_by_message(leaf, by_index)
        leaf.detected_type, leaf.declared_type = "asc", "application/octet-stream"
        assert not covered_by_message(leaf, by_index)
    finally:
        result.close()
    assert not covered_by_message(FakePart("1", b"x"), {})  # unknown part kinds: sent


@needs_clamd
def test_inline_text_is_scanned_once_within_the_message(clamd: ClamdInstance) -> None:
    """A virus in an inline text part (base64, so not visible in the raw bytes) is found
    by clamd's own MIME parsing of the whole message; the part is not sent again unless
    scan_text_parts is on."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@b", "c@d", "inline"
    msg.set_content("Look: " + eicar().decode() + "\n", cte="base64")
    raw = msg.as_bytes()
    assert eicar() not in raw
    for scan_text, requests in ((False, 1), (True, 2)):
        result = decoded(raw)
        try:
            check = make_check(clamd.endpoints, cache_size=0, scan_text_parts=scan_text,
                               first_infected_stops_scan=False)
            hits = scan(check, make_task(raw, result.parts))
            check.close()
        finally:
            result.close()
        assert hits[0] == Hit("CLAMAV_VIRUS", options=(EICAR,), part=None)
        assert check.client.requests == requests, scan_text
    raw = mixed_mail()
    result = decoded(raw)
    try:
        check = make_check(clamd.endpoints, cache_size=0)
        assert scan(check, make_task(raw, result.parts)) == []
        check.close()
    finally:
        result.close()
    assert check.client.requests == 4  # the message, notes.txt, x.zip, inside.txt


@needs_clamd
def test_first_infected_stops_scan(clamd: ClamdInstance) -> None:
    raw = mail(eicar().decode() + "\n")
    parts = [FakePart("2", eicar() + b" variant"), FakePart("3", b"clean")]
    stop = scan(make_check(clamd.endpoints), make_task(raw, parts))
    assert [h.part for h in stop] == [None]
    every = scan(make_check(clamd.endpoints, first_infected_stops_scan=False),
                 make_task(raw, parts))
    assert [(h.symbol, h.part) for h in every] == [("CLAMAV_VIRUS", None),
                                                   ("CLAMAV_VIRUS", "2")]


@needs_clamd
def test_first_endpoint_dead_second_alive(clamd: ClamdInstance, tmp_path: Path) -> None:
    dead = [f"unix:{tmp_path}/nothing.sock", "tcp:127.0.0.1:1"]
    check = make_check([*dead, clamd.tcp_endpoint])
    raw = mail(eicar().decode())
    assert [h.symbol for h in scan(check, make_task(raw))] == ["CLAMAV_VIRUS"]


@needs_clamd
def test_larger_than_stream_max_length_is_unchecked(clamd: ClamdInstance) -> None:
    check = make_check(clamd.endpoints, stream_max_length=2048)
    hits = scan(check, make_task(mail("x" * 4096)))
    assert [h.symbol for h in hits] == ["CLAMAV_UNCHECKED"]
    assert "stream_max_length" in hits[0].options[0]
    assert check.client.requests == 0


@needs_clamd
def test_clamd_size_limit_is_never_clean(tmp_path: Path) -> None:
    # The check believes clamd takes 25 MiB, clamd takes 64 KiB. clamd answers "size
    # limit exceeded" and closes while we still send; usually the answer is read
    # (UNCHECKED), but the kernel may drop it when our next write is reset, and then
    # the outcome is CLAMAV_FAIL (tempfail). Either way the message is not clean.
    with ClamdInstance(tmp_path, stream_max_length=64 * 1024) as small:
        check = make_check([small.unix_endpoint])
        hits = scan(check, make_task(mail("y" * 200_000)))
        assert [h.symbol for h in hits] in (["CLAMAV_UNCHECKED"], ["CLAMAV_FAIL"])
        if hits[0].symbol == "CLAMAV_UNCHECKED":
            assert "size limit" in hits[0].options[0]
        assert len(check.cache) == 0


@needs_clamd
@needs_testfiles
def test_scan_limit_alert_is_unchecked_not_virus(tmp_path: Path) -> None:
    deep = (TESTFILES_DIR / "clam_cache_emax.tgz").read_bytes()
    with ClamdInstance(tmp_path, extra={"AlertExceedsMax": "yes"}) as alerting:
        hits = scan(make_check([alerting.unix_endpoint]), make_task(deep))
    assert [h.symbol for h in hits] == ["CLAMAV_UNCHECKED"]
    assert "Heuristics.Limits.Exceeded.MaxRecursion" in hits[0].options[0]


@needs_clamd
def test_cache_avoids_second_request(tmp_path: Path) -> None:
    task = make_task(mail(eicar().decode()))
    with ClamdInstance(tmp_path) as own:
        check = make_check([own.unix_endpoint])
        first = scan(check, task)
        own.stop()
        assert not own.ping()
        assert scan(check, task) == first
        assert check.client.requests == 1
        assert [h.symbol for h in scan(check, make_task(mail("new"), []))] == ["CLAMAV_FAIL"]


@needs_clamd
def test_stopped_or_killed_clamd_fails(tmp_path: Path) -> None:
    with ClamdInstance(tmp_path) as own:
        check = make_check([own.unix_endpoint], cache_size=0)
        assert scan(check, make_task(mail())) == []
        own.kill()  # the socket file stays behind: connection refused
        hits = scan(check, make_task(mail()))
        assert [h.symbol for h in hits] == ["CLAMAV_FAIL"]
        own.start()
        own.stop()  # clean shutdown removes the socket: no such file
        assert [h.symbol for h in scan(check, make_task(mail()))] == ["CLAMAV_FAIL"]
        unchecked = make_check([own.unix_endpoint], fail_action="unchecked")
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
        client = ClamdClient([f"unix:{path}"], retry_after=retry_after)
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


def fake_scan(fake: FakeClamd, task: Task, **settings: Any) -> tuple[list[Hit], float]:
    async def go() -> tuple[list[Hit], float]:
        async with fake:
            check = make_check([fake.endpoint], **settings)
            began = time.monotonic()
            hits = list(await check.run(task))
            return hits, time.monotonic() - began
    return asyncio.run(go())


@pytest.mark.parametrize("answer", [b"hello there\0", b"stream: bogus\0", b"\0" * 3,
                                    b"Can't allocate memory ERROR\0", None])
def test_bad_answers_fail(tmp_path: Path, answer: bytes | None) -> None:
    fake = FakeClamd(tmp_path / "fake.sock", answer)
    hits, _ = fake_scan(fake, make_task(mail()))
    assert [h.symbol for h in hits] == ["CLAMAV_FAIL"]
    # an ERROR record read on a kept session is asked again alone and read to the end
    # (a virus may be named after it: tests/test_clamav_replies.py)
    assert fake.requests == (2 if answer and answer.endswith(b" ERROR\0") else 1)


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
    hits, _ = fake_scan(fake, task, first_infected_stops_scan=False, reuse_connections=reuse)
    assert hits == [Hit("CLAMAV_VIRUS", options=("Some.Virus",))]
    assert fake.requests == 2  # a session that answered "FOUND" is not reused
    alone, _ = fake_scan(FakeClamd(tmp_path / "f2.sock", answer), make_task(b"second"))
    assert [h.symbol for h in alone] == ["CLAMAV_FAIL"]


# --- kept-open sessions (zIDSESSION) ----------------------------------------------


@needs_clamd
def test_scans_share_one_session_connection(tmp_path: Path) -> None:
    with ClamdInstance(tmp_path) as own:
        check = make_check([own.unix_endpoint], cache_size=0)
        plain = make_check([own.unix_endpoint], cache_size=0, reuse_connections=False)

        async def go(c: ClamAV) -> list[list[str]]:
            out = []
            for body in ("one", eicar().decode(), "three", "four"):
                out.append([h.symbol for h in await c.run(make_task(mail(body)))])
            return out

        expected = [[], ["CLAMAV_VIRUS"], [], []]
        assert asyncio.run(go(check)) == expected
        # one session for the clean scans; after "FOUND" it is closed (with AllMatch
        # clamd may send more records for that request), so the next scan opens another
        assert check.client.requests == 4 and check.client.connections == 2
        assert asyncio.run(go(plain)) == expected
        assert plain.client.requests == plain.client.connections == 4


@needs_clamd
def test_session_closed_by_a_clamd_restart_is_replaced(tmp_path: Path) -> None:
    with ClamdInstance(tmp_path) as own:
        check = make_check([own.unix_endpoint], cache_size=0)

        async def go() -> list[list[str]]:
            first = [h.symbol for h in await check.run(make_task(mail("before")))]
            own.restart()  # the kept connection dies with the old clamd
            second = [h.symbol for h in await check.run(make_task(mail(eicar().decode())))]
            return [first, second]

        assert asyncio.run(go()) == [[], ["CLAMAV_VIRUS"]]
        assert check.client.connections == 2


@needs_clamd
def test_large_pieces_and_old_sessions_get_their_own_connection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import scanner.checks.clamd_client as client_module

    with ClamdInstance(tmp_path) as own:
        check = make_check([own.unix_endpoint], cache_size=0, scan_parts=False)

        async def go() -> None:
            await check.run(make_task(mail("small")))
            assert check.client.connections == 1
            await check.run(make_task(mail("z" * (client_module.SESSION_MAX + 10))))
            assert check.client.connections == 2  # large: a connection of its own
            await check.run(make_task(mail("small again")))
            assert check.client.connections == 2  # the session is still there
            monkeypatch.setattr(client_module, "SESSION_IDLE", 0.0)
            await check.run(make_task(mail("after a long pause")))
            assert check.client.connections == 3  # too old to trust: a new one

        asyncio.run(go())
        assert check.client.requests == 4


def test_hanging_session_fails_once_within_timeout(tmp_path: Path) -> None:
    fake = FakeClamd(tmp_path / "fake.sock", hang=True)
    hits, elapsed = fake_scan(fake, make_task(mail()), timeout=0.5)
    assert [h.symbol for h in hits] == ["CLAMAV_FAIL"]
    assert fake.requests == 1 and elapsed < 3.0  # no second attempt on a new connection


@needs_clamd
def test_scan_command_closes_its_clamd_sessions(tmp_path: Path) -> None:
    """`scanner scan` under Python's development mode: no unclosed connection is left."""
    import subprocess
    import sys

    with ClamdInstance(tmp_path / "clamd") as own:
        cfg = tmp_path / "scan.toml"
        cfg.write_text('[checks]\ndisabled = ["auth", "dnsbl", "uribl"]\n'
                       f'[checks.settings.clamav]\nendpoints = ["{own.unix_endpoint}"]\n'
                       f'[quarantine]\ndirectory = "{tmp_path / "q"}"\nampdp_socket = ""\n')
        message = tmp_path / "m.eml"
        message.write_bytes(mail(eicar().decode()))
        run = subprocess.run([sys.executable, "-X", "dev", "-m", "scanner", "scan", "-c",
                              str(cfg), str(message), str(message)],
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("CLAMAV_VIRUS") == 2
    assert "ResourceWarning" not in run.stderr, run.stderr[-2000:]


def test_limit_alert_in_a_session_is_asked_again_alone(tmp_path: Path) -> None:
    """With AllMatch a limit alert may come first and a virus after it: read it all."""
    fake = FakeClamd(tmp_path / "fake.sock",
                     b"stream: Heuristics.Limits.Exceeded.MaxFiles FOUND\0"
                     b"stream: Some.Virus FOUND\0")
    hits, _ = fake_scan(fake, make_task(b"payload"))
    assert [h.symbol for h in hits] == ["CLAMAV_VIRUS"]
    assert hits[0].options == ("Some.Virus",)
    assert (fake.requests, fake.connections) == (2, 2)  # the session, then alone


@needs_clamd
def test_config_check_says_when_clamd_does_not_answer(tmp_path: Path) -> None:
    """`scanner config check` (and `serve` at start) warn when clamd is not there, and
    say what will happen to mail; the configuration itself is valid (exit 0)."""
    import subprocess
    import sys

    def check(endpoint: str, extra: str = "") -> subprocess.CompletedProcess:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[checks.settings.clamav]\nendpoints = ["{endpoint}"]\n{extra}')
        return subprocess.run([sys.executable, "-X", "dev", "-m", "scanner", "config",
                               "check", str(cfg)], capture_output=True, text=True, timeout=60)

    absent = check(f"unix:{tmp_path / 'none.sock'}")
    assert absent.returncode == 0, absent.stderr
    assert "warning: clamav: clamd at unix:" in absent.stderr
    assert "does not answer PING" in absent.stderr and "451" in absent.stderr
    unchecked = check(f"unix:{tmp_path / 'none.sock'}", 'fail_action = "unchecked"\n')
    assert "passed as UNCHECKED" in unchecked.stderr
    with ClamdInstance(tmp_path / "clamd") as own:
        present = check(own.unix_endpoint)
    assert present.returncode == 0 and "warning" not in present.stderr, present.stderr
    assert "ResourceWarning" not in present.stderr

"""The clamav check and its clamd client against a private clamd: the protocol pieces,
what is scanned and found.

The real-clamd tests start ``scanner.testing.clamd.ClamdInstance`` (a tiny, test-owned
signature database; no freshclam) and are skipped, visibly, when clamd is missing.
Failures are in tests/test_clamav_failures.py, kept-open sessions in
tests/test_clamav_sessions.py.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from decoders.unpack import unpack
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
from scanner.task import Hit
from scanner.testing.clamd import TESTFILES_DIR, ClamdInstance, clamd_binary, eicar
from tests.clamav_helpers import (
    EICAR,
    TEST_FILE,
    FakePart,
    mail,
    make_check,
    make_task,
    needs_clamd,
    needs_testfiles,
    scan,
)

MISSED_IN_MAIL = {"clam_cache_emax.tgz"}
"""Test files clamd does not find inside a mail with MaxRecursion 16 (Debian's value):
clam.exe sits about 17 levels deep (nested tar.gz) plus the MIME and base64 layers."""



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



"""``scanner quarantine import-amavis``: mail amavis held becomes scanner's, same ids.

The amavis files are written here as amavis 2.13 writes them (``Amavis::Out::Local``
and ``do_quarantine``: its envelope fields, then the fields it added, then its Received
header and the message, LF line ends); the release goes to a real SMTP next hop (the
test sink) and, where Debian's client is available, through ``amavisd-release``.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
from pathlib import Path

import pytest

from scanner.quarantine.amavis_import import NotHeldMail, import_directory, read_message
from scanner.quarantine.config import QuarantineConfig
from scanner.quarantine.record import QuarantineError
from scanner.quarantine.release import release
from scanner.quarantine.store import Quarantine
from scanner.reinject.deliver import NextHop
from scanner.testing.sink import Sink

from .test_amavisd_release import CLIENT, _edited_copy
from .test_cli import cli
from .util import config_text

MESSAGE = (b"Received: from mx.example.test ([127.0.0.1])\n"
           b" by localhost (mx.example.test [127.0.0.1]) (amavisd-new, port 10024)\n"
           b" with ESMTP id 7vykgLjHGVrk; Mon,  7 Dec 2026 10:00:00 +0100 (CET)\n"
           b"From: Spammer <spammer@example.org>\nTo: bob@example.test\n"
           b"Subject: =?UTF-8?Q?G=C3=BCnstig?=\nMessage-ID: <cheap@example.org>\n\n"
           b"buy now\nFrom the team\n")


def amavis_file(mail_id: str, *, blocked: list[str] | None,
                recipients: tuple[str, ...] = ("lover@example.test", "bob@example.test"),
                sender: str = "spammer@example.org", qid: str | None = None,
                spam: bool = True, message: bytes = MESSAGE) -> bytes:
    """A quarantine file as amavis writes it (prepended fields in its order)."""
    rcpts = ",\n ".join(f"<{r}>" for r in recipients).encode()
    head = (f"Return-Path: <{sender}>\nDelivered-To: spam-quarantine\n"
            f"X-Envelope-From: <{sender}>\n").encode() + b"X-Envelope-To: " + rcpts + b"\n"
    if blocked is not None:
        head += b"X-Envelope-To-Blocked: " + ",\n ".join(f"<{r}>" for r in blocked).encode() \
            + b"\n"
    head += f"X-Quarantine-ID: <{qid or mail_id}>\n".encode()
    if spam:
        head += (b"X-Spam-Flag: YES\nX-Spam-Score: 12.345\nX-Spam-Level: ************\n"
                 b"X-Spam-Status: Yes, score=12.345 tag=2 tag2=6.31 kill=6.31\n"
                 b" tests=[BAYES_99=3.5, URIBL_BLACK=1.7] autolearn=no\n")
    else:
        head += b"X-Amavis-Alert: INFECTED, message contains virus: Eicar-Signature\n"
    return head + message


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


@pytest.fixture
def amavis_dir(tmp_path: Path) -> Path:
    """Debian's layout ($quarantine_subdir_levels = 1) with one file of each kind."""
    base = tmp_path / "virusmails"
    (base / "7").mkdir(parents=True)
    (base / "V").mkdir()
    (base / "7" / "spam-7vykgLjHGVrk.gz").write_bytes(
        gzip.compress(amavis_file("7vykgLjHGVrk", blocked=["bob@example.test"])))
    (base / "V" / "virus-V1rus-Id_A1b").write_bytes(
        amavis_file("V1rus-Id_A1b", blocked=["lover@example.test", "bob@example.test"],
                    spam=False))
    (base / "7" / "spam-7oLdFormat01.gz").write_bytes(  # before amavis 2.6: no Blocked
        gzip.compress(amavis_file("7oLdFormat01", blocked=None, recipients=("a@x.test",))))
    (base / "a").mkdir()
    (base / "a" / "archive-aRchiveCopy1").write_bytes(amavis_file("aRchiveCopy1", blocked=[]))
    (base / "7" / "spam-7WrongId0001.gz").write_bytes(
        gzip.compress(amavis_file("7WrongId0001", blocked=[], qid="7SomeOther01")))
    (base / "b").mkdir()
    (base / "b" / "badh-bNoRcpts0001").write_bytes(
        amavis_file("bNoRcpts0001", blocked=[], recipients=()))
    (base / "c").mkdir()
    (base / "c" / "spam-cCutShort001.gz").write_bytes(
        gzip.compress(amavis_file("cCutShort001", blocked=[]))[:40])
    (base / "amavisd.lock").write_bytes(b"")
    os.utime(base / "7" / "spam-7vykgLjHGVrk.gz", (1765000000, 1765000000))
    return base


def test_each_file_becomes_a_message_of_ours_under_its_own_id(amavis_dir: Path,
                                                               quarantine: Quarantine):
    result = import_directory(quarantine, amavis_dir)
    assert sorted(r.mail_id for r in result.added) == ["7oLdFormat01", "7vykgLjHGVrk",
                                                      "V1rus-Id_A1b"]
    failed = "\n".join(result.failed)
    assert "spam-7WrongId0001.gz: its X-Quarantine-ID is 7SomeOther01" in failed
    assert "badh-bNoRcpts0001: no X-Envelope-To" in failed
    assert "spam-cCutShort001.gz: corrupt gzip data" in failed
    assert len(result.failed) == 3
    ignored = "\n".join(result.ignored)
    assert "archive-aRchiveCopy1: an archive copy" in ignored
    assert "amavisd.lock: not an amavis quarantine file name" in ignored

    spam = quarantine.get("7vykgLjHGVrk")
    assert (spam.category, spam.sender, spam.score) == ("SPAM", "spammer@example.org", 12.345)
    assert spam.recipients == ["lover@example.test", "bob@example.test"]
    assert spam.held_for == ["bob@example.test"]
    assert spam.symbols == ["BAYES_99", "URIBL_BLACK"]
    assert spam.subject == "Günstig" and spam.message_id == "<cheap@example.org>"
    assert spam.stored_at == 1765000000 and spam.relative_path == "7/spam-7vykgLjHGVrk.gz"
    # the message as amavis would release it: its own fields gone, its Received kept
    assert quarantine.read_stored(spam)[1] == _crlf(MESSAGE)
    virus = quarantine.get("V1rus-Id_A1b")
    assert virus.category == "VIRUS" and virus.score is None
    assert quarantine.read_stored(virus)[1] == _crlf(MESSAGE)  # X-Amavis-Alert gone too
    assert quarantine.get("7oLdFormat01").held_for is None  # who got it: not known

    again = import_directory(quarantine, amavis_dir)
    assert again.added == [] and sorted(again.present) == sorted(
        r.mail_id for r in result.added)


def test_a_release_sends_what_amavis_would_have_sent(amavis_dir: Path,
                                                     quarantine: Quarantine, sink: Sink,
                                                     hop: NextHop):
    import_directory(quarantine, amavis_dir)
    replies = asyncio.run(release(quarantine, hop, "7vykgLjHGVrk", recipients=None,
                                  requested_by="admin"))
    assert [r[:3] for r in replies] == ["250"]
    got = sink.received[-1]
    assert got.recipients == ["bob@example.test"]  # the lover had it already
    assert got.sender == "spammer@example.org"
    header, _, body = got.data.partition(b"\r\n")
    assert header.startswith(b"X-Quarantine-Released: by admin at ")
    assert body == _crlf(MESSAGE)
    asyncio.run(release(quarantine, hop, "7oLdFormat01", recipients=None, requested_by="a"))
    assert sink.received[-1].recipients == ["a@x.test"]  # not recorded: every recipient


def test_an_mbox_form_file_loses_its_from_line_and_escapes(tmp_path: Path):
    path = tmp_path / "spam-mB0xFormat01"
    path.write_bytes(b"From spammer@example.org Mon Dec  7 09:00:00 2026\n"
                     + amavis_file("mB0xFormat01", blocked=[],
                                   message=MESSAGE.replace(b"\nFrom the", b"\n>From the")))
    msg = read_message(path)
    assert msg.raw == _crlf(MESSAGE) and msg.held_for == []


def test_not_held_mail_is_told_apart(tmp_path: Path):
    path = tmp_path / "archive-aRchiveCopy1"
    path.write_bytes(amavis_file("aRchiveCopy1", blocked=[]))
    with pytest.raises(NotHeldMail):
        read_message(path)
    path = tmp_path / "spam-sHort"
    path.write_bytes(b"x")
    with pytest.raises(NotHeldMail):
        read_message(path)
    path = tmp_path / "spam-sNoSender001"
    lines = amavis_file("sNoSender001", blocked=[]).split(b"\n")
    path.write_bytes(b"\n".join(n for n in lines if not n.startswith(
        (b"Return-Path:", b"X-Envelope-From:"))))
    with pytest.raises(QuarantineError, match="its sender is unknown") as caught:
        read_message(path)
    assert not isinstance(caught.value, NotHeldMail)


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another user needs root")
@pytest.mark.parametrize("exists", [True, False])
def test_run_as_root_the_files_go_to_the_quarantines_owner(amavis_dir: Path, tmp_path: Path,
                                                           exists: bool):
    """The files and directories made are the quarantine directory's owner's; one
    that does not exist yet (nothing stored so far) is made as its parent's (the
    service user's home)."""
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    qdir = home / "quarantine"
    if exists:
        qdir.mkdir()
        os.chown(qdir, 65534, 65534)
    q = Quarantine(QuarantineConfig(directory=str(qdir)))
    result = import_directory(q, amavis_dir)
    assert result.added and qdir.stat().st_uid == 65534
    assert (qdir / "index.sqlite").stat().st_uid == 65534  # the filter writes it too
    for rec in result.added:
        path = Path(rec.path)
        assert (path.stat().st_uid, path.parent.stat().st_uid) == (65534, 65534), rec.path


def test_the_command(amavis_dir: Path, tmp_path: Path, sink: Sink):
    config = tmp_path / "scanner.toml"
    config.write_text(config_text(tmp_path / "q", sink.port))
    out = cli(config, "import-amavis", str(amavis_dir), "--dry-run")
    assert out.returncode == 1  # three files cannot be imported
    assert out.stdout.decode().count("would import  ") == 3
    assert not (tmp_path / "q" / "7").exists()
    out = cli(config, "import-amavis", str(amavis_dir))
    err = out.stderr.decode()
    assert out.returncode == 1 and out.stdout.decode().count("imported  ") == 3
    assert ("3 message(s) imported, 0 already in the quarantine, 2 ignored, "
            "3 not imported") in err
    assert "could not be imported (see above)" in err
    for bad in ("7/spam-7WrongId0001.gz", "b/badh-bNoRcpts0001", "c/spam-cCutShort001.gz"):
        (amavis_dir / bad).unlink()
    out = cli(config, "import-amavis", str(amavis_dir))
    assert out.returncode == 0, out.stderr
    assert "0 message(s) imported, 3 already in the quarantine" in out.stderr.decode()
    out = cli(config, "import-amavis", str(tmp_path / "nowhere"))
    assert out.returncode == 1 and b"no such directory" in out.stderr


@pytest.mark.skipif(not CLIENT.exists(), reason=f"{CLIENT} not found (apt-get install "
                    "amavisd-new, or set AMAVISD_RELEASE)")
def test_amavisd_release_with_the_id_amavis_logged(amavis_dir: Path, server, sink: Sink,
                                                   tmp_path: Path):
    """After the switch, the id in amavis's log line still releases the message."""
    _, q, path = server()
    import_directory(q, amavis_dir)
    out = subprocess.run([*_edited_copy(tmp_path, path), "7/spam-7vykgLjHGVrk.gz"],
                         capture_output=True, text=True, timeout=60)
    assert out.stderr.startswith("250 2.6.0 Ok, id=rel-7vykgLjHGVrk"), out.stderr
    got = sink.wait_for(1)[0]
    assert got.recipients == ["bob@example.test"]
    assert got.data.partition(b"\r\n")[2] == _crlf(MESSAGE)


def test_links_are_not_followed(tmp_path: Path, quarantine: Quarantine):
    """amavis's directory belongs to its user; root importing it must not read, through
    a link planted there, a file that user could not."""
    base = tmp_path / "virusmails"
    base.mkdir()
    secret = tmp_path / "secret-lLinkTarget1"
    secret.write_bytes(amavis_file("lLinkTarget1", blocked=[]))
    (base / "spam-lLinkTarget1").symlink_to(secret)
    (base / "l").symlink_to(tmp_path, target_is_directory=True)
    result = import_directory(quarantine, base)
    assert result.added == [] and result.failed == [] and result.ignored == []
    with pytest.raises(QuarantineError, match="cannot read it"):
        read_message(base / "spam-lLinkTarget1")

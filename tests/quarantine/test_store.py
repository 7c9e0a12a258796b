"""Storing and reading back: file layout, index fields, filters, bad input."""

from __future__ import annotations

import gzip
import os
import stat
import time
from pathlib import Path

import pytest

from scanner.mailid import new_mail_id
from scanner.quarantine.config import QuarantineConfig
from scanner.quarantine.record import QuarantineError, UnknownMailId, relative_path
from scanner.quarantine.store import Quarantine

from .util import sample, store


def test_round_trip_file_layout_and_index_fields(quarantine: Quarantine, qdir: Path):
    raw = sample("round trip", b"8bit \xe9t\xe9\r\n")
    mail_id = new_mail_id()
    rec = quarantine.store(mail_id=mail_id, raw=raw, sender="spam@example.org",
                           recipients=["Bob@Example.test", "carol@example.test"],
                           category="spam", score=7.25, symbols=["A", "B"],
                           subject="round trip", message_id="<round.trip@example.org>",
                           client_addr="192.0.2.7", policy_bank="MYNETS")
    assert rec.relative_path == f"{mail_id[0]}/spam-{mail_id}.gz"
    path = qdir / rec.relative_path
    assert rec.path == str(path)
    stored = gzip.decompress(path.read_bytes())
    assert stored.endswith(raw)  # the message as received, after its envelope block
    assert stored.startswith(b"X-Scanner-Quarantine: 1; bytes=")
    assert (b"X-Envelope-To: <Bob@Example.test>,\r\n <carol@example.test>\r\n"
            in stored[:-len(raw)])
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]
    got = quarantine.get(mail_id)
    assert got.secret_id == rec.secret_id and len(got.secret_id) == 12
    assert got.secret_id != mail_id
    assert (got.sender, got.recipients, got.category, got.score, got.symbols) == (
        "spam@example.org", ["Bob@Example.test", "carol@example.test"], "SPAM", 7.25,
        ["A", "B"])
    assert (got.subject, got.message_id, got.size, got.client_addr, got.policy_bank) == (
        "round trip", "<round.trip@example.org>", len(raw), "192.0.2.7", "MYNETS")
    assert got.host == "filter1.test" and got.state == "held"
    assert abs(got.stored_at - time.time()) < 60
    assert quarantine.read(mail_id) == raw


def test_list_filters(quarantine: Quarantine):
    spam = store(quarantine, recipients=["bob@example.test"])
    virus = store(quarantine, category="VIRUS", recipients=["carol@example.test"])
    assert [r.mail_id for r in quarantine.list()] == [spam.mail_id, virus.mail_id]
    assert [r.mail_id for r in quarantine.list(category="virus")] == [virus.mail_id]
    assert [r.mail_id for r in quarantine.list(rcpt="<BOB@example.test>")] == [spam.mail_id]
    assert quarantine.list(rcpt="nobody@example.test") == []
    assert len(quarantine.list(since=time.time() - 60)) == 2


def test_list_by_recipient_finds_an_idn_address_in_either_spelling(quarantine: Quarantine):
    """``quarantine list --rcpt`` compares addresses as the policy does: the A-label
    and U-label forms of a domain are one, a UTF-8 local part keeps its case."""
    held = store(quarantine, recipients=["Δοκιμή@Пример.рф"])
    for form in ("Δοκιμή@xn--e1afmkfd.xn--p1ai", "<Δοκιμή@ПРИМЕР.РФ>", "Δοκιμή@пример.рф"):
        assert [r.mail_id for r in quarantine.list(rcpt=form)] == [held.mail_id], form
    assert quarantine.list(rcpt="δοκιμή@пример.рф") == []
    assert quarantine.list(since=time.time() + 60) == []


@pytest.mark.parametrize(("levels", "expect"), [(0, "virus-{id}.gz"),
                                                (2, "{a}/{b}/virus-{id}.gz")])
def test_subdir_levels(tmp_path: Path, levels: int, expect: str):
    q = Quarantine(QuarantineConfig(directory=str(tmp_path), subdir_levels=levels))
    rec = store(q, category="VIRUS")
    mid = rec.mail_id
    assert rec.relative_path == expect.format(id=mid, a=mid[0], b=mid[1])
    assert (tmp_path / rec.relative_path).is_file()
    assert q.read(mid) == q.read_record(q.get(mid))


def test_category_prefixes():
    assert relative_path("7vykgLjHGVrk", "SPAM", 1) == "7/spam-7vykgLjHGVrk.gz"
    assert relative_path("7vykgLjHGVrk", "BAD-HEADER", 1) == "7/badh-7vykgLjHGVrk.gz"
    assert relative_path("7vykgLjHGVrk", "Weird/../cat", 0) == "weirdcat-7vykgLjHGVrk.gz"


def test_unknown_and_malformed_ids(quarantine: Quarantine):
    with pytest.raises(UnknownMailId, match="unknown mail_id AAAAAAAAAAAA"):
        quarantine.get("AAAAAAAAAAAA")
    with pytest.raises(UnknownMailId, match="is not a mail_id"):
        quarantine.get("../etc/passwd")
    with pytest.raises(QuarantineError, match="is not a mail_id"):
        store(quarantine, mail_id="short")


def test_same_mail_id_twice_keeps_the_first(quarantine: Quarantine, qdir: Path):
    first = store(quarantine, subject="first")
    with pytest.raises(QuarantineError, match="exists already"):
        store(quarantine, mail_id=first.mail_id, subject="second")
    assert b"first" in quarantine.read(first.mail_id)
    assert len(quarantine.list()) == 1


def test_index_failure_leaves_no_file(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    q = Quarantine(QuarantineConfig(directory=str(tmp_path / "q"),
                                    index=f"sqlite:{blocker}/index.sqlite"))
    with pytest.raises(QuarantineError, match="index"):
        store(q)
    assert [p for p in (tmp_path / "q").rglob("*") if p.is_file()] == []


def test_text_that_no_database_takes(quarantine: Quarantine):
    subject = "caf\udce9 \x00nul " + "x" * 5000
    rec = store(quarantine, subject=subject)
    got = quarantine.get(rec.mail_id)
    assert got.subject.startswith("caf\ufffd nul ") and len(got.subject) == 2000


def test_corrupt_and_missing_files(quarantine: Quarantine, qdir: Path):
    rec = store(quarantine)
    path = qdir / rec.relative_path
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(QuarantineError, match=f"{path} is corrupt"):
        quarantine.read(rec.mail_id)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(QuarantineError, match="is corrupt"):
        quarantine.read(rec.mail_id)
    path.unlink()
    with pytest.raises(QuarantineError, match=f"{path} is missing"):
        quarantine.read(rec.mail_id)


def test_row_missing_but_file_present_is_named(quarantine: Quarantine, qdir: Path):
    rec = store(quarantine)
    quarantine.index.delete(rec.mail_id)
    with pytest.raises(UnknownMailId, match=f"the file {qdir / rec.relative_path} exists"):
        quarantine.get(rec.mail_id)


def test_delete(quarantine: Quarantine, qdir: Path):
    rec = store(quarantine)
    quarantine.delete(rec.mail_id)
    assert not (qdir / rec.relative_path).exists()
    with pytest.raises(UnknownMailId):
        quarantine.delete(rec.mail_id)


def test_expire_and_sweep(quarantine: Quarantine, qdir: Path):
    old = store(quarantine, subject="old")
    new = store(quarantine, subject="new")
    # age the first message by a day (index and file)
    with quarantine.index._transaction(write=True) as run:
        run("UPDATE quarantine SET stored_at = stored_at - 86400 WHERE mail_id = ?",
            [old.mail_id])
    debris = qdir / "x" / ".tmp-123-abc"
    stray = qdir / "x" / "spam-xxxxxxxxxxxx.gz"
    debris.parent.mkdir(exist_ok=True)  # a stored message may already use "x/"
    for p in (debris, stray):
        p.write_bytes(b"junk")
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    assert quarantine.expire(3600) == 1
    assert [r.mail_id for r in quarantine.list()] == [new.mail_id]
    assert not (qdir / old.relative_path).exists()
    assert (qdir / new.relative_path).exists()
    assert not debris.exists() and not stray.exists()


def test_sweep_keeps_young_debris(quarantine: Quarantine, qdir: Path):
    store(quarantine)
    young = qdir / "y" / ".tmp-1-2"
    young.parent.mkdir(exist_ok=True)  # the stored message may already use "y/"
    young.write_bytes(b"in use")
    assert quarantine.sweep() == []
    assert young.exists()


def test_an_index_this_user_may_not_read_is_an_error_not_an_empty_quarantine(
        quarantine: Quarantine, monkeypatch) -> None:
    store(quarantine)
    index_path = quarantine.index.path
    real_stat = os.stat

    def denied(path, *args, **kw):  # type: ignore[no-untyped-def]
        if os.fspath(path) == index_path:
            raise PermissionError(13, "Permission denied", index_path)
        return real_stat(path, *args, **kw)
    monkeypatch.setattr(os, "stat", denied)
    with pytest.raises(QuarantineError, match="Permission denied"):
        quarantine.list()


def test_a_lost_index_is_rebuilt_from_the_envelopes_in_the_files(qdir: Path) -> None:
    """Move the index aside (corrupt, or lost with a disk): the files still say whom
    each message was for; reindex gives them rows and release works again."""
    from scanner.quarantine.config import QuarantineConfig

    first = Quarantine(QuarantineConfig(directory=str(qdir)), hostname="filter1.test")
    raw = sample("lost index", b"body\r\n")
    kept = first.store(mail_id=new_mail_id(), raw=raw, sender="spam@example.org",
                       recipients=["bob@example.test", "carol@example.test"],
                       category="spam", score=9.0, symbols=["X"], subject="lost index",
                       message_id="<lost@example.org>", client_addr=None, policy_bank="")
    legacy = qdir / "z" / "virus-zzzzzzzzzzzz.gz"  # written before envelopes existed
    legacy.parent.mkdir(exist_ok=True)
    legacy.write_bytes(gzip.compress(raw))
    (qdir / "index.sqlite").rename(qdir / "index.sqlite.corrupt")
    second = Quarantine(QuarantineConfig(directory=str(qdir)), hostname="filter1.test")
    assert second.list() == []
    preview, _ = second.reindex(dry_run=True)
    assert [r.mail_id for r in preview] == [kept.mail_id] and second.list() == []
    added, skipped = second.reindex()
    assert [r.mail_id for r in added] == [kept.mail_id]
    assert len(skipped) == 1 and "virus-zzzzzzzzzzzz.gz: no envelope" in skipped[0]
    got = second.get(kept.mail_id)
    assert (got.sender, got.recipients, got.category, got.subject, got.size) == (
        "spam@example.org", ["bob@example.test", "carol@example.test"], "SPAM",
        "lost index", len(raw))
    assert int(got.stored_at) == int(kept.stored_at)
    assert second.read(kept.mail_id) == raw
    assert second.reindex() == ([], skipped)  # nothing left to add


def test_the_index_is_not_readable_by_others(tmp_path: Path) -> None:
    """The index holds envelopes, subjects and the secret_ids that authorise releases;
    placed outside the 0750 quarantine directory (index = "sqlite:/elsewhere/...") in a
    directory others may enter, it must still not be readable by them, nor its WAL."""
    import sqlite3

    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o755)
    old = os.umask(0o022)
    try:
        q = Quarantine(QuarantineConfig(directory=str(tmp_path / "q"),
                                        index=f"sqlite:{public}/index.sqlite"))
        store(q)
        keep = sqlite3.connect(public / "index.sqlite")  # keeps -wal and -shm in place
        keep.execute("SELECT count(*) FROM quarantine").fetchone()
        store(q)
        for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
            mode = stat.S_IMODE((public / name).stat().st_mode)
            assert mode & 0o007 == 0, f"{name} is {oct(mode)}"
        keep.close()
    finally:
        os.umask(old)


def test_a_forged_index_row_never_reaches_files_outside(quarantine: Quarantine, qdir: Path,
                                                         tmp_path: Path) -> None:
    """Whoever may write the index (the service user, whose files root's cron expire
    reads; another host sharing a PostgreSQL index) could point a row at any file:
    '../', a path elsewhere, a symlink inside the directory leading out. Release and
    'show --raw' refuse to read it (nothing is mailed out), and delete and expire remove
    the row but never the file."""
    import gzip as gz

    secret = tmp_path / "outside" / "spam-AAAAAAAAAAAA.gz"
    secret.parent.mkdir()
    secret.write_bytes(gz.compress(b"Subject: root's secret\r\n\r\nxyz\r\n"))
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    store(quarantine)  # the index and its directory exist
    forged = {"AAAAAAAAAAAA": "../outside/spam-AAAAAAAAAAAA.gz",
              "BBBBBBBBBBBB": str(secret.parent / "spam-BBBBBBBBBBBB.gz"),
              "CCCCCCCCCCCC": "../victim",
              "LLLLLLLLLLLL": "L/spam-LLLLLLLLLLLL.gz"}
    (secret.parent / "spam-BBBBBBBBBBBB.gz").write_bytes(secret.read_bytes())
    for mail_id, rel in forged.items():
        rec = store(quarantine, mail_id=mail_id)
        with quarantine.index._transaction(write=True) as run:
            run("UPDATE quarantine SET relative_path = ?, stored_at = 0 WHERE mail_id = ?",
                [rel, rec.mail_id])
        (qdir / rec.relative_path).unlink()
    (qdir / "L" / "spam-LLLLLLLLLLLL.gz").symlink_to(secret)  # a link inside, leading out
    for mail_id in forged:
        with pytest.raises(QuarantineError, match="which is not its file below"):
            quarantine.read(mail_id)
        if mail_id != "LLLLLLLLLLLL":  # the link is only resolved to read or remove
            assert quarantine.get(mail_id).path == ""
    quarantine.delete("CCCCCCCCCCCC")
    assert quarantine.expire(3600) == 3  # the forged rows left (stored_at 0)
    assert victim.read_text() == "keep me"
    assert secret.exists() and (secret.parent / "spam-BBBBBBBBBBBB.gz").exists()
    assert (qdir / "L" / "spam-LLLLLLLLLLLL.gz").is_symlink()


def test_root_never_hands_a_linked_file_to_the_service_user(tmp_path: Path) -> None:
    """Root (cron's expire, an admin) writing the index gives new database files to the
    directory's owner, the service user. That user may put symlinks in its directory:
    index.sqlite pointing at a database of root's must stay root's, not be chowned."""
    import sqlite3

    if os.geteuid() != 0:
        pytest.skip("needs root")
    qdir = tmp_path / "q"
    qdir.mkdir()
    os.chown(qdir, 65534, 65534)  # the service user's quarantine directory
    roots = tmp_path / "roots.sqlite"  # some database of root's, elsewhere
    sqlite3.connect(roots).close()
    (qdir / "index.sqlite").symlink_to(roots)  # planted by the service user
    q = Quarantine(QuarantineConfig(directory=str(qdir)))
    store(q)  # as root: a write
    assert roots.stat().st_uid == 0
    assert (qdir / "index.sqlite").is_symlink()

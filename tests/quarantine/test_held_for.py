"""Whom a quarantined message was held for (``held_for``, amavis's X-Envelope-To-Blocked).

The index and the file's envelope block record, when a message is stored, which of its
recipients did not get it; a release without named recipients goes to those only, and
an index made before the column existed gets it (or, read-only, reads NULL).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from scanner.mailid import new_mail_id
from scanner.quarantine import envelope, files, index_sqlite
from scanner.quarantine.config import QuarantineConfig
from scanner.quarantine.index import SCHEMA
from scanner.quarantine.release import release
from scanner.quarantine.store import Quarantine
from scanner.reinject.deliver import NextHop
from scanner.testing.sink import Sink

from .util import sample

OLD_SCHEMA = (SCHEMA[0].replace(",\n        held_for TEXT", ""), *SCHEMA[1:])


def _store(q: Quarantine, recipients: list[str], held_for: list[str] | None,
           mail_id: str | None = None):  # type: ignore[no-untyped-def]
    return q.store(mail_id=mail_id or new_mail_id(), raw=sample(), sender="spam@example.org",
                   recipients=recipients, category="SPAM", score=9.5, symbols=["BAYES_99"],
                   subject="cheap pills", message_id="<p@example.org>",
                   client_addr="192.0.2.7", policy_bank="", held_for=held_for)


def test_recorded_in_the_index_and_in_the_files_envelope(quarantine: Quarantine):
    both = ["lover@example.test", "bob@example.test"]
    mixed = _store(quarantine, both, ["bob@example.test"])
    kept = _store(quarantine, both, [])
    unknown = _store(quarantine, both, None)
    assert quarantine.get(mixed.mail_id).held_for == ["bob@example.test"]
    assert quarantine.get(kept.mail_id).held_for == []
    assert quarantine.get(unknown.mail_id).held_for is None
    got = {rec.mail_id: rec.got_it("LOVER@example.test") for rec in quarantine.records()}
    assert got == {mixed.mail_id: True, kept.mail_id: True, unknown.mail_id: None}
    assert quarantine.get(mixed.mail_id).got_it("Bob@Example.test") is False
    assert quarantine.get(mixed.mail_id).release_targets() == ["bob@example.test"]
    assert quarantine.get(kept.mail_id).release_targets() == both  # nobody held: all
    assert quarantine.get(unknown.mail_id).release_targets() == both
    stored = {m: envelope.split(files.read_gz(Path(quarantine.get(m).path)))[0]
              for m in (mixed.mail_id, kept.mail_id, unknown.mail_id)}
    assert stored[mixed.mail_id].held_for == ["bob@example.test"]
    assert stored[kept.mail_id].held_for == []
    assert stored[unknown.mail_id].held_for is None
    data = files.read_gz(Path(quarantine.get(mixed.mail_id).path))
    assert b"\r\nX-Envelope-To-Blocked: <bob@example.test>\r\n" in data
    assert b"X-Envelope-To-Blocked" not in files.read_gz(
        Path(quarantine.get(unknown.mail_id).path))


def test_a_lost_index_gets_it_back_from_the_files(qdir: Path):
    q = Quarantine(QuarantineConfig(directory=str(qdir)))
    mixed = _store(q, ["a@example.test", "b@example.test", "c@example.test"],
                   ["a@example.test", "c@example.test"])
    kept = _store(q, ["a@example.test"], [])
    (qdir / "index.sqlite").unlink()
    fresh = Quarantine(QuarantineConfig(directory=str(qdir)))
    added, skipped = fresh.reindex()
    assert skipped == [] and len(added) == 2
    assert fresh.get(mixed.mail_id).held_for == ["a@example.test", "c@example.test"]
    assert fresh.get(kept.mail_id).held_for == []


def _old_index(path: Path, mail_id: str) -> None:
    """An index as releases before the column made it, holding one row."""
    con = sqlite3.connect(path, isolation_level=None)
    for statement in OLD_SCHEMA:
        con.execute(statement)
    con.execute("INSERT INTO quarantine (mail_id, secret_id, stored_at, sender, recipients, "
                "category, symbols, size, subject, message_id, policy_bank, relative_path, "
                "host) VALUES (?, 's', 1, 'x@example.org', '[\"bob@example.test\"]', 'SPAM', "
                "'[]', 10, 'old', '', '', ?, 'h')", (mail_id, f"{mail_id[0]}/spam-{mail_id}.gz"))
    con.close()


def _columns(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {row[1] for row in con.execute("PRAGMA table_info(quarantine)")}
    finally:
        con.close()


def test_an_older_sqlite_index_gets_the_column(qdir: Path):
    qdir.mkdir(parents=True)
    old_id = new_mail_id()
    _old_index(qdir / "index.sqlite", old_id)
    assert "held_for" not in _columns(qdir / "index.sqlite")
    q = Quarantine(QuarantineConfig(directory=str(qdir)))
    assert q.index.get(old_id).held_for is None  # the old row: not known
    assert "held_for" in _columns(qdir / "index.sqlite")
    new = _store(q, ["bob@example.test", "carol@example.test"], ["carol@example.test"])
    assert q.get(new.mail_id).held_for == ["carol@example.test"]
    # a second process opening it later finds the column there and adds nothing
    again = Quarantine(QuarantineConfig(directory=str(qdir)))
    assert again.get(new.mail_id).held_for == ["carol@example.test"]
    assert again.index.missing == frozenset()


def test_a_reader_without_write_access_reads_null(qdir: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    """The database opened read-only (as by a user who may read the file but not
    write it; root passes every permission check, so SQLite's own read-only mode
    stands in): no ALTER, the column reads as NULL, listing works."""
    qdir.mkdir(parents=True)
    old_id = new_mail_id()
    _old_index(qdir / "index.sqlite", old_id)
    real = sqlite3.connect

    def read_only(path: str, *args: object, **kwargs: object) -> sqlite3.Connection:
        return real(f"file:{path}?mode=ro", *args, uri=True, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(index_sqlite.sqlite3, "connect", read_only)
    q = Quarantine(QuarantineConfig(directory=str(qdir)))
    rows = list(q.records())
    assert [r.mail_id for r in rows] == [old_id] and rows[0].held_for is None
    assert q.index.missing == frozenset({"held_for"})
    monkeypatch.setattr(index_sqlite.sqlite3, "connect", real)
    assert "held_for" not in _columns(qdir / "index.sqlite")


def test_a_release_without_recipients_goes_to_those_it_was_held_for(
        quarantine: Quarantine, sink: Sink, hop: NextHop):
    mixed = _store(quarantine, ["lover@example.test", "bob@example.test",
                                "carol@example.test"], ["bob@example.test",
                                                        "carol@example.test"])
    replies = asyncio.run(release(quarantine, hop, mixed.mail_id, recipients=None,
                                  requested_by="test"))
    assert [r[:3] for r in replies] == ["250", "250"]
    assert sink.received[-1].recipients == ["bob@example.test", "carol@example.test"]
    assert quarantine.get(mixed.mail_id).released_to == ["bob@example.test",
                                                         "carol@example.test"]
    kept = _store(quarantine, ["lover@example.test"], [])  # nobody held: to everyone
    asyncio.run(release(quarantine, hop, kept.mail_id, recipients=None, requested_by="t"))
    assert sink.received[-1].recipients == ["lover@example.test"]
    named = _store(quarantine, ["lover@example.test", "bob@example.test"],
                   ["bob@example.test"])
    asyncio.run(release(quarantine, hop, named.mail_id, recipients=["lover@example.test"],
                        requested_by="t"))  # named recipients win
    assert sink.received[-1].recipients == ["lover@example.test"]

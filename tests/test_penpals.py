"""Pen pals: outgoing mail is remembered, replies and correspondents score lower."""

from __future__ import annotations

import asyncio
import re
import smtplib
import threading
from functools import partial
from pathlib import Path

import pytest

from scanner import config as cfgmod
from scanner import penpals_thread
from scanner.checks.base import CheckContext
from scanner.checks.penpals import PenPals, PenPalsSettings
from scanner.errors import ConfigError
from scanner.penpals_store import PenPalsStore, normalise
from scanner.policy.decide import decide
from scanner.scores import load_scores
from scanner.task import Destiny, Hit, Verdict
from scanner.testing.filter import FilterProcess
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from scanner.testing.tasks import task_from_bytes

DAY = 86400.0


def _msg(message_id: str, extra: str = "") -> bytes:
    return (f"From: someone\r\nTo: someone\r\nSubject: lunch\r\nMessage-ID: <{message_id}>\r\n"
            f"{extra}\r\nSee you at noon.\r\n").encode()


def test_addresses_are_compared_without_case_and_extension() -> None:
    assert normalise("<Alice+Lists@Example.COM>") == "alice@example.com"
    assert normalise("bob-x@example.org", "-") == "bob@example.org"


def test_idn_domains_are_one_correspondent_in_either_spelling() -> None:
    """As amavis's pen pals (maddr: idn_to_ascii domain, local part lower-cased as
    octets): user@пример.рф and user@xn--e1afmkfd.xn--p1ai are one address, and a
    UTF-8 local part keeps its case (Δ is not δ)."""
    assert normalise("Friend@Пример.РФ") == normalise("friend@xn--e1afmkfd.xn--p1ai")
    assert normalise("Δοκιμή+x@example.org") == "Δοκιμή@example.org"
    assert normalise("Δοκιμή@example.org") != normalise("δοκιμή@example.org")


def test_the_store_remembers_pairs_and_message_ids(tmp_path: Path) -> None:
    store = PenPalsStore(str(tmp_path / "db" / "penpals.sqlite"), max_age=30 * DAY)
    store.record("alice@example.test", ["bob@example.org"], "m1@example.test", now=1000.0)
    store.record("alice@example.test", ["bob@example.org"], "m2@example.test", now=2000.0)
    found = store.lookup("alice@example.test", "bob@example.org", ["m1@example.test"], 3000.0)
    assert (found.wrote_at, found.replied_at) == (2000.0, 1000.0)
    # another local user, another remote: nothing known
    assert store.lookup("carol@example.test", "bob@example.org", ["m1@example.test"],
                        3000.0).replied_at is None
    assert store.lookup("alice@example.test", "eve@example.net", [], 3000.0).wrote_at is None
    # past max_age it is forgotten, and purge removes it
    late = 2000.0 + 31 * DAY
    assert store.lookup("alice@example.test", "bob@example.org", ["m2@example.test"],
                        late).wrote_at is None
    assert store.purge(late) == 3
    store.close()


def _check(tmp_path: Path, config: cfgmod.Config | None = None) -> PenPals:
    async def no_cpu(*_a: object) -> None:
        return None
    config = config or cfgmod.load(None)
    settings = PenPalsSettings(database=str(tmp_path / "penpals.sqlite"))
    return PenPals(settings, CheckContext(config=config, run_cpu=no_cpu))


def _run(check: PenPals, raw: bytes, sender: str, recipients: tuple[str, ...],
         bank: str = "") -> list[Hit]:
    with task_from_bytes(raw, sender=sender, recipients=recipients, policy_bank=bank) as task:
        return list(asyncio.run(check.run(task)))


def _send_out(check: PenPals, raw: bytes, sender: str, recipients: tuple[str, ...],
              category: str = "CLEAN") -> list[Hit]:
    """Outgoing mail through the check, then delivered: what the processor does."""
    with task_from_bytes(raw, sender=sender, recipients=recipients,
                         policy_bank="ORIGINATING") as task:
        hits = list(asyncio.run(check.run(task)))
        task.verdicts = {r: Verdict(category, Destiny.PASS, 0.0) for r in recipients}
        check.after_delivery(task, list(recipients))
        return hits


def test_replies_and_correspondents_get_a_bonus_for_their_recipient_only(tmp_path: Path
                                                                         ) -> None:
    check = _check(tmp_path)
    out = _send_out(check, _msg("q1@example.test"), "alice@example.test",
                    ("bob@example.org", "dave@example.org"))
    assert out == []  # outgoing mail is only remembered
    reply = _msg("r1@example.org", "In-Reply-To: <q1@example.test>\r\n")
    hits = _run(check, reply, "bob@example.org", ("Alice@Example.test", "carol@example.test"))
    assert [(h.symbol, h.recipient) for h in hits] == [("PENPALS_REPLY", "Alice@Example.test")]
    assert hits[0].factor == pytest.approx(1.0, abs=0.001)
    # dave got the same message from alice: writing back without a reference is KNOWN
    hits = _run(check, _msg("d1@example.org"), "dave@example.org", ("alice@example.test",))
    assert [h.symbol for h in hits] == ["PENPALS_KNOWN"]
    # strangers, bounces and a forged reference to someone else's message get nothing
    assert _run(check, reply, "eve@example.net", ("carol@example.test",)) == []
    assert _run(check, reply, "", ("alice@example.test",)) == []
    check.close()


def test_a_sender_claiming_our_own_domain_from_outside_gets_no_bonus(tmp_path: Path
                                                                    ) -> None:
    """Our users' mail to each other is recorded too; mail from outside with one of
    our addresses as its sender may be forged, so it gets no aid (amavis's "local
    sender from outside, ignored")."""
    config = cfgmod.loads("[policy]\nlocal_domains = ['example.test']\n"
                          '[policy.recipients."@hosted.test"]\nlocal = true\n', "t.toml")
    check = _check(tmp_path, config)
    _send_out(check, _msg("q1@example.test"), "alice@example.test",
              ("carol@example.test", "bob@example.org", "x@hosted.test"))
    _send_out(check, _msg("q2@example.test"), "carol@example.test", ("alice@example.test",))
    assert _run(check, _msg("f1@example.test"), "carol@example.test",
                ("alice@example.test",)) == []
    assert _run(check, _msg("f2@hosted.test"), "x@hosted.test", ("alice@example.test",)) == []
    assert [h.symbol for h in _run(check, _msg("b1@example.org"), "bob@example.org",
                                   ("alice@example.test",))] == ["PENPALS_KNOWN"]
    # the same mail through the submission bank is our user's own: only recorded
    assert _run(check, _msg("f3@example.test"), "carol@example.test",
                ("alice@example.test",), bank="ORIGINATING") == []
    check.close()


def test_outgoing_spam_is_not_remembered(tmp_path: Path) -> None:
    """A hijacked account's spam run must not make its victims pen pals."""
    check = _check(tmp_path)
    _send_out(check, _msg("s1@example.test"), "alice@example.test", ("victim@example.org",),
              category="SPAM")
    reply = _msg("v1@example.org", "In-Reply-To: <s1@example.test>\r\n")
    assert _run(check, reply, "victim@example.org", ("alice@example.test",)) == []
    _send_out(check, _msg("s2@example.test"), "alice@example.test", ("victim@example.org",))
    assert [h.symbol for h in _run(check, _msg("v2@example.org"), "victim@example.org",
                                   ("alice@example.test",))] == ["PENPALS_KNOWN"]


def test_the_bonus_halves_with_every_halflife(tmp_path: Path) -> None:
    check = _check(tmp_path)
    check._store.record("alice@example.test", ["bob@example.org"], None,
                        now=__import__("time").time() - 14 * DAY)
    hits = _run(check, _msg("x@example.org"), "bob@example.org", ("alice@example.test",))
    assert [h.symbol for h in hits] == ["PENPALS_KNOWN"]
    assert hits[0].factor == pytest.approx(0.25, abs=0.01)  # two halflives of 7 days
    # the age as amavis's format_time_interval writes it (seconds pass while testing)
    assert re.fullmatch(r"14 0:00:0\d", hits[0].options[0]), hits[0].options


def test_database_trouble_gives_no_bonus_and_no_failure(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    (tmp_path / "file").write_text("not a directory")
    async def no_cpu(*_a: object) -> None:
        return None
    check = PenPals(PenPalsSettings(database=str(tmp_path / "file" / "penpals.sqlite")),
                    CheckContext(config=cfgmod.load(None), run_cpu=no_cpu))
    assert _run(check, _msg("z@example.org"), "bob@example.org", ("alice@example.test",)) == []
    assert "no pen pals memory meanwhile" in caplog.text


def test_a_recipients_hit_counts_in_its_own_verdict_only(tmp_path: Path) -> None:
    scores = load_scores()
    policy = cfgmod.load(None).policy
    with task_from_bytes(_msg("v@example.org"), recipients=("a@example.test", "b@example.test")
                         ) as task:
        task.hits.append(Hit("PENPALS_REPLY", recipient="a@example.test", source="penpals"))
        a = decide(task, "a@example.test", policy, scores, {})
        b = decide(task, "b@example.test", policy, scores, {})
    assert a.score == pytest.approx(b.score - 3.0)
    assert "PENPALS_REPLY" in {h.symbol for h in a.hits}
    assert "PENPALS_REPLY" not in {h.symbol for h in b.hits}


def two_listener_config(tmp_path: Path, sink: Sink, inbound: int, outbound: int,
                        policy: str = "", checks: str = "", database: str = "") -> str:
    """A filter with an inbound listener and an ORIGINATING one, the pen pals check on
    (its database under ``tmp_path`` unless ``database`` names one), X-Spam-Status on
    every message; ``policy`` and ``checks`` lines go into those sections."""
    return f"""
[server]
workers = 2
hostname = "scanner.test"
log_file = "{tmp_path / 'scanner.log'}"

[[listeners]]
port = {inbound}

[[listeners]]
port = {outbound}
policy_bank = "ORIGINATING"

[reinject]
port = {sink.port}

[policy]
tag_level = -100.0     # X-Spam-Status on every message, to read the symbols
{policy}

[checks]
enabled = ["*", "penpals"]
disabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]
{checks}

[checks.settings.penpals]
database = "{database or tmp_path / 'penpals.sqlite'}"

[quarantine]
directory = "{tmp_path / 'quarantine'}"
ampdp_socket = ""
"""


def test_through_the_filter_a_reply_to_outgoing_mail_is_tagged_for_its_recipient(
        tmp_path: Path, sink: Sink) -> None:
    inbound, outbound = free_port(), free_port()
    config = two_listener_config(tmp_path, sink, inbound, outbound)
    with FilterProcess(tmp_path, config, [inbound, outbound]):
        with smtplib.SMTP("127.0.0.1", outbound, timeout=30) as smtp:
            smtp.sendmail("alice@example.test", ["bob@example.org"], _msg("out1@example.test"))
        reply = _msg("in1@example.org", "In-Reply-To: <out1@example.test>\r\n")
        with smtplib.SMTP("127.0.0.1", inbound, timeout=30) as smtp:
            smtp.sendmail("bob@example.org", ["alice@example.test", "carol@example.test"], reply)
        got = sink.wait_for(3)
    copies = {tuple(r.recipients): r.data for r in got if r.sender == "bob@example.org"}
    assert set(copies) == {("alice@example.test",), ("carol@example.test",)}
    assert b"PENPALS_REPLY" in copies[("alice@example.test",)]
    assert b"PENPALS" not in copies[("carol@example.test",)]
    # amavis's header with the age of the correspondence (seconds here)
    assert re.search(rb"\r\nX-Amavis-PenPals: age 0 0:0[01]:\d\d\r\n",
                     copies[("alice@example.test",)])


def test_recordings_waiting_for_a_network_database_are_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A hanging database cannot make recordings pile up without end; those that wait
    are done before the thread ends (a worker's close waits for them)."""
    monkeypatch.setattr(penpals_thread, "MAX_PENDING", 3)
    thread = penpals_thread.StoreThread()
    gate, done = threading.Event(), []
    assert all(thread.submit(partial(lambda i: (gate.wait(10), done.append(i)), i))
               for i in range(3))
    assert not thread.submit(lambda: done.append("dropped"))
    gate.set()
    thread.close(lambda: done.append("closed"), wait=10.0)
    assert done == [0, 1, 2, "closed"]


def test_a_database_url_of_another_kind_is_refused_not_made_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt PostgreSQL URL was taken for a relative SQLite path: the filter made
    ./postgresq:/u:PASSWORD@db.example/ and kept a memory of its own there."""
    monkeypatch.chdir(tmp_path)
    async def no_cpu(*_a: object) -> None:
        return None
    settings = PenPalsSettings(database="postgresq://u:hunter2@db.example/mail")
    with pytest.raises(ConfigError) as refused:
        PenPals(settings, CheckContext(config=cfgmod.load(None), run_cpu=no_cpu))
    assert "postgresq://u:***@db.example/mail" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []

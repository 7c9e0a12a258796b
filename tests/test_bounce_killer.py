"""Bounce recognition (amavis's inspect_a_bounce_message) and the bounce killer."""

from __future__ import annotations

import asyncio
import smtplib
import time
from pathlib import Path

import pytest

from scanner import config as cfgmod
from scanner.bounces import inspect_bounce
from scanner.checks.base import CheckContext
from scanner.checks.bounce_killer import _envelope
from scanner.checks.penpals import PenPals, PenPalsSettings
from scanner.policy.decide import decide
from scanner.scores import load_scores
from scanner.task import Envelope, Hit, Recipient, Task
from scanner.testing.filter import FilterProcess
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from scanner.testing.tasks import task_from_bytes
from tests.test_penpals import two_listener_config

CORPORA = Path(__file__).resolve().parents[1] / "corpora"
DAY = 86400.0
USER = "reader@example.net"


def _read(name: str) -> bytes:
    path = CORPORA / "bounces" / name
    return (path if path.exists() else CORPORA / "modern" / name).read_bytes()


def _inspect(name: str, sender: str = "") -> tuple[str, str | None] | None:
    with task_from_bytes(_read(name), sender=sender, recipients=(USER,)) as task:
        found = inspect_bounce(task.parts, _envelope(task))
    return None if found is None else (found.kind, found.message_id)


@pytest.mark.parametrize("name, sender, expected", [
    ("ham-dsn-bounce.eml", "", ("DSN", "<a9b8c7d6-minutes@example.net>")),
    ("dsn-headers-backscatter.eml", "", ("DSN", "<0b1c2d3e4f.forged@bulk-sender.example>")),
    ("mdn-read-receipt.eml", "", ("MDN", "<a9b8c7d6-minutes@example.net>")),
    ("qmail-failure-notice.eml", "", ("bounce", "<77c1d2e3.forged@cheap-bulk.example>")),
    ("mixed-failure-from-daemon.eml", "", ("bounce", "<inv4471.forged@bulk.example>")),
    ("forwarded-message.eml", "sam@example.org", None),
    ("auto-reply.eml", "j.doe@example.org", None),
])
def test_bounces_are_recognised_as_amavis_does(name: str, sender: str,
                                               expected: tuple[str, str] | None) -> None:
    assert _inspect(name, sender) == expected


def test_an_unstructured_notice_needs_a_daemon_author_and_a_full_header() -> None:
    notice = _read("qmail-failure-notice.eml")
    # from a person, it is just text that quotes a header
    person = notice.replace(b"From: MAILER-DAEMON@mail.remote.example",
                            b"From: someone@remote.example")
    with task_from_bytes(person, sender="", recipients=(USER,)) as task:
        assert inspect_bounce(task.parts, _envelope(task)) is None
    # too few header fields in the quoted copy: not recognisable
    short = notice.split(b"Return-Path: <reader")[0] + b"From: reader@example.net\n\nx\n"
    with task_from_bytes(short, sender="", recipients=(USER,)) as task:
        assert inspect_bounce(task.parts, _envelope(task)) is None


def test_a_standard_report_is_a_bounce_even_without_a_readable_header() -> None:
    raw = _read("dsn-headers-backscatter.eml")
    head, _, tail = raw.partition(b"Content-Type: text/rfc822-headers\n\n")
    stripped = head + b"Content-Type: text/rfc822-headers\n\nX-Junk: 1\n\n" + \
        tail[tail.index(b"--B5E9E2A1.1765012442/mx.remote.example--"):]
    with task_from_bytes(stripped, sender="", recipients=(USER,)) as task:
        found = inspect_bounce(task.parts, _envelope(task))
    assert found is not None and found.kind == "DSN" and found.message_id is None


def _check(tmp_path: Path, local_domains: list[str] | None = None, extra: str = ""
           ) -> PenPals:
    async def no_cpu(*_a: object) -> None:
        return None
    config = cfgmod.load(None)
    if local_domains is not None or extra:
        listed = ", ".join(f'"{d}"' for d in local_domains or [])
        text = f"[policy]\nlocal_domains = [{listed}]\n{extra}"
        path = tmp_path / "scanner.toml"
        path.write_text(text)
        config = cfgmod.load(str(path))
    settings = PenPalsSettings(database=str(tmp_path / "penpals.sqlite"))
    return PenPals(settings, CheckContext(config=config, run_cpu=no_cpu))


def _hits(check: PenPals, name: str, recipients: tuple[str, ...] = (USER,),
          sender: str = "", bank: str = "") -> list[tuple[str, str | None]]:
    with task_from_bytes(_read(name), sender=sender, recipients=recipients,
                         policy_bank=bank) as task:
        return [(h.symbol, h.recipient) for h in asyncio.run(check.run(task))]


def test_a_bounce_of_a_message_our_user_sent_is_rescued(tmp_path: Path) -> None:
    check = _check(tmp_path)
    check._store.record(USER, ["j.doe@example.org"], "a9b8c7d6-minutes@example.net")
    assert _hits(check, "ham-dsn-bounce.eml") == []
    # a read receipt from the person our user wrote to: theirs, and a correspondent
    assert _hits(check, "mdn-read-receipt.eml", sender="j.doe@example.org") == [
        ("PENPALS_KNOWN", USER)]
    # the same bounce to another local user, who did not send it, is killed for them
    assert _hits(check, "ham-dsn-bounce.eml", ("carol@example.net",)) == [
        ("BOUNCE_KILLED", "carol@example.net")]
    check.close()


def test_backscatter_is_killed_for_every_recipient(tmp_path: Path) -> None:
    check = _check(tmp_path)
    for name in ("dsn-headers-backscatter.eml", "qmail-failure-notice.eml",
                 "mixed-failure-from-daemon.eml"):
        assert _hits(check, name, (USER, "b@example.net")) == [
            ("BOUNCE_KILLED", USER), ("BOUNCE_KILLED", "b@example.net")], name
    # not bounces: nothing
    assert _hits(check, "forwarded-message.eml", sender="sam@example.org") == []
    assert _hits(check, "auto-reply.eml", sender="j.doe@example.org") == []
    check.close()


def test_a_bounce_older_than_eight_days_is_no_longer_ours(tmp_path: Path) -> None:
    check = _check(tmp_path)
    check._store.record(USER, ["j.doe@example.org"], "a9b8c7d6-minutes@example.net",
                        now=time.time() - 9 * DAY)
    assert _hits(check, "ham-dsn-bounce.eml") == [("BOUNCE_KILLED", USER)]
    check.close()


def test_a_message_id_in_a_local_domain_rescues_the_bounce(tmp_path: Path) -> None:
    check = _check(tmp_path, [".example.net"])
    assert _hits(check, "ham-dsn-bounce.eml") == []  # <...@example.net>: ours
    assert _hits(check, "dsn-headers-backscatter.eml") == [("BOUNCE_KILLED", USER)]
    check.close()


def test_a_recipient_tables_local_domain_rescues_the_bounce_too(tmp_path: Path) -> None:
    """A domain hosted outside local_domains (a recipient table says local, as amavis's
    SQL and LDAP lookups in @local_domains_maps would)."""
    check = _check(tmp_path, None, '[policy.recipients."@.example.net"]\nlocal = true\n')
    assert _hits(check, "ham-dsn-bounce.eml") == []
    assert _hits(check, "dsn-headers-backscatter.eml") == [("BOUNCE_KILLED", USER)]
    check.close()


def test_outgoing_bounces_are_not_looked_at(tmp_path: Path) -> None:
    check = _check(tmp_path)
    assert _hits(check, "dsn-headers-backscatter.eml", bank="ORIGINATING") == []
    check.close()


def test_the_shipped_weight_is_zero_and_a_site_weight_makes_it_spam(tmp_path: Path) -> None:
    """As amavis's $bounce_killer_score: 0 unless the site sets it (amavis suggests 100)."""
    shipped = load_scores()
    assert shipped.get("BOUNCE_KILLED").weight == 0.0
    site = tmp_path / "site.toml"
    site.write_text("[symbols.BOUNCE_KILLED]\nweight = 100.0\n")
    scores = load_scores([str(site)])
    policy = cfgmod.load(None).policy
    with task_from_bytes(_read("dsn-headers-backscatter.eml"), sender="",
                         recipients=(USER,)) as task:
        task.hits.append(Hit("BOUNCE_KILLED", recipient=USER, source="penpals"))
        off = decide(task, USER, policy, shipped, {})
        on = decide(task, USER, policy, scores, {})
    assert on.score == pytest.approx(off.score + 100.0)
    assert on.category == "SPAM" and off.category != "SPAM"


def test_through_the_filter_backscatter_is_spam_and_our_bounce_is_not(
        tmp_path: Path, sink: Sink) -> None:
    """Alice's message goes out through the ORIGINATING listener; its bounce comes back
    and passes clean, while a bounce of spam forged in her name scores BOUNCE_KILLED
    (site weight 100) and is tagged as spam."""
    inbound, outbound = free_port(), free_port()
    (tmp_path / "site.toml").write_text("[symbols.BOUNCE_KILLED]\nweight = 100.0\n")
    config = two_listener_config(tmp_path, sink, inbound, outbound,
                                 policy="tag2_level = 6.0\nkill_level = 1000.0",
                                 checks=f'score_files = ["{tmp_path / "site.toml"}"]')
    original = (b"From: Alex Meyer <reader@example.net>\r\nTo: j.doe@example.org\r\n"
                b"Subject: Minutes of Tuesday's meeting\r\n"
                b"Message-ID: <a9b8c7d6-minutes@example.net>\r\n\r\nHi Jo.\r\n")
    with FilterProcess(tmp_path, config, [inbound, outbound]):
        with smtplib.SMTP("127.0.0.1", outbound, timeout=30) as smtp:
            smtp.sendmail(USER, ["j.doe@example.org"], original)
        sink.wait_for(1)
        with smtplib.SMTP("127.0.0.1", inbound, timeout=30) as smtp:
            smtp.sendmail("", [USER], _read("ham-dsn-bounce.eml"))
            smtp.sendmail("", [USER], _read("dsn-headers-backscatter.eml"))
        got = sink.wait_for(3)
    bounces = [r.data for r in got if r.sender in ("", "<>")]
    ours = next(d for d in bounces if b"a9b8c7d6-minutes" in d)
    forged = next(d for d in bounces if b"forged@bulk-sender" in d)
    assert b"BOUNCE_KILLED" not in ours and b"X-Spam-Flag: YES" not in ours
    assert b"BOUNCE_KILLED" in forged and b"X-Spam-Flag: YES" in forged


class _Classifier:
    """A stand-in for a spam check (the classifier): counts its runs."""

    name = "classifier"
    kind = "spam"
    symbols: dict[str, str] = {}

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, task: Task) -> list[Hit]:
        self.runs += 1
        return []


def _analysed(tmp_path: Path, name: str, weight: float, gate: bool = True,
              recorded: bool = False) -> tuple[Task, int]:
    """``name`` (a duplicate Subject added: BAD-HEADER, and a site rule SITE_DUP)
    analysed with the pen pals check, the rules and a classifier stand-in,
    BOUNCE_KILLED weighing ``weight``; ``gate`` off: the checks are run without the
    score table, as before the bounce killer could skip spam checks. The task and how
    often the classifier ran."""
    from scanner.checks.rules import Rules, RulesSettings
    from scanner.pipeline.checks import run_checks
    from scanner.pipeline.processor import Listener, Processor
    from scanner.reinject.deliver import NextHop

    async def inline(func: object, *args: object) -> object:
        return func(*args)  # type: ignore[operator]

    (tmp_path / "site").mkdir(parents=True)
    (tmp_path / "site" / "local.cf").write_text("header SITE_DUP Subject =~ /duplicate/\n"
                                                "score SITE_DUP 0.5\n")
    (tmp_path / "site.toml").write_text(f"[symbols.BOUNCE_KILLED]\nweight = {weight}\n")
    scores = load_scores([str(tmp_path / "site.toml")])
    config = cfgmod.load(None)
    pals = _check(tmp_path)
    if recorded:
        pals._store.record(USER, ["j.doe@example.org"], "a9b8c7d6-minutes@example.net")
    rules = Rules(RulesSettings(cache_dir=str(tmp_path / "cache"),
                                dirs=(str(tmp_path / "site"),)),
                  CheckContext(config=config, run_cpu=inline))
    classifier = _Classifier()
    checks = [pals, rules, classifier]
    hop = NextHop("127.0.0.1", free_port(), False, 1, 1, "scanner.test", True)
    proc = Processor(config, checks, scores, hop, "scanner.test", run_cpu=inline)
    raw = b"Subject: duplicate\r\n" + _read(name).replace(b"\n", b"\r\n")
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=raw,
                envelope=Envelope("", (Recipient(USER),)))

    async def go() -> None:
        if gate:
            await proc.analyse(task, Listener(10024, "ESMTP", ""))
            return
        from scanner.pipeline.parse import parse_headers
        from scanner.pipeline.unpack import unpack_now
        task.message = parse_headers(task.raw)
        unpacked = unpack_now(task, config)
        try:
            await run_checks(task, checks, 120.0)
        finally:
            if unpacked is not None:
                unpacked.close()
        await proc._decide(task, Listener(10024, "ESMTP", ""))

    asyncio.run(go())
    pals.close()
    return task, classifier.runs


def _outcome(task: Task) -> tuple[str, str, tuple[str, ...]]:
    verdict = task.verdicts[USER]
    return verdict.category, verdict.destiny.value, verdict.categories


def test_a_bounce_killed_for_every_recipient_costs_no_spam_checks(tmp_path: Path) -> None:
    """amavis skips the spam checks of a bounce its killer blocks when
    $bounce_killer_score > 20 (Amavis.pm, $bypass_spam_checks_by_bounce_killer): the
    classifier does not run, the rules find BAD-HEADER but run no SpamAssassin rule,
    and the outcome is the one the full checks give."""
    task, runs = _analysed(tmp_path / "gate", "dsn-headers-backscatter.eml", 100.0)
    full, full_runs = _analysed(tmp_path / "full", "dsn-headers-backscatter.eml", 100.0,
                                gate=False)
    assert (runs, full_runs) == (0, 1)
    assert {h.symbol for h in task.hits} == {"BOUNCE_KILLED", "BAD_HEADER_DUPLICATE"}
    assert {h.symbol for h in full.hits} == {"BOUNCE_KILLED", "BAD_HEADER_DUPLICATE",
                                             "SITE_DUP"}
    assert _outcome(task) == _outcome(full)
    assert _outcome(task)[0] == "SPAM" and "BAD-HEADER" in _outcome(task)[2]


@pytest.mark.parametrize("name, weight, recorded", [
    ("dsn-headers-backscatter.eml", 0.0, False),  # the shipped weight: nothing is killed
    ("dsn-headers-backscatter.eml", 20.0, False),  # amavis: only above 20
    ("ham-dsn-bounce.eml", 100.0, True),  # rescued: the bounce of our user's message
])
def test_a_bounce_not_certainly_killed_gets_every_check(tmp_path: Path, name: str,
                                                        weight: float, recorded: bool) -> None:
    task, runs = _analysed(tmp_path, name, weight, recorded=recorded)
    assert runs == 1
    assert "SITE_DUP" in {h.symbol for h in task.hits if h.source == "rules"}

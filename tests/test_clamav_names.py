"""Names clamd reports that are spam, not viruses (amavis's @virus_name_to_spam_score_maps).

A private clamd gets a one-line phishing database (``H:paypal.com``), so its own phishing
heuristic fires on an HTML link that shows one host and leads to another, as it does
with Debian's clamd.conf (``PhishingScanURLs true``) and the official database; and
signatures named like Sanesecurity's spam and malware ones. amavis scores the first
two kinds 0.1 spam points instead of calling the mail INFECTED; so must we.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import scanner.config
from scanner.checks.base import CheckContext
from scanner.checks.clamav import ClamAV, ClamAVSettings
from scanner.config.schema import build
from scanner.errors import ConfigError
from scanner.policy.decide import decide
from scanner.scores import load_scores
from scanner.task import Destiny, Envelope, Hit, Recipient, Task
from scanner.testing.clamd import ClamdInstance, FakeClamd, clamd_binary, eicar

JUNK = b"Cheap replica watches, best prices in town"
MALWARE = b"pretend this is a downloader script body"


async def _run_here(func: Any, *args: Any) -> Any:
    return func(*args)


def make_check(endpoints: list[str], **settings: Any) -> ClamAV:
    config = ClamAVSettings(endpoints=tuple(endpoints), **settings)
    return ClamAV(config, CheckContext(config=scanner.config.load(None), run_cpu=_run_here))


def make_task(raw: bytes) -> Task:
    envelope = Envelope(sender="a@b.example", recipients=(Recipient("c@d.example"),))
    return Task(mail_id="names", envelope=envelope, raw=raw, parts=[])


def html_mail(html: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "news@b.example", "c@d.example", "news"
    msg.set_content(html, subtype="html")
    return msg.as_bytes()


def scan(check: ClamAV, raw: bytes) -> list[Hit]:
    return list(asyncio.run(check.run(make_task(raw))))


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdInstance]:
    if clamd_binary() is None:
        pytest.skip("clamd not installed (apt-get install clamav-daemon)")
    instance = ClamdInstance(tmp_path_factory.mktemp("clamd"))
    instance.prepare()
    (instance.db_dir / "phish.pdb").write_text("H:paypal.com\n", "ascii")
    (instance.db_dir / "third-party.ndb").write_text(
        f"Sanesecurity.Junk.4711:0:*:{JUNK.hex()}\n"
        f"Sanesecurity.Malware.815:0:*:{MALWARE.hex()}\n", "ascii")
    instance.start()
    yield instance
    instance.close()


def test_clamd_phishing_heuristic_is_spam_not_a_virus(clamd: ClamdInstance) -> None:
    raw = html_mail('<p>Sign in: <a href="https://login.other.example/">'
                    'https://www.paypal.com/signin</a></p>')
    hits = scan(make_check([clamd.unix_endpoint]), raw)
    assert hits == [Hit("CLAMAV_SPAM", factor=0.1,
                        options=("Heuristics.Phishing.Email.SpoofedDomain",))]
    policy = scanner.config.load(None).policy
    verdict = decide(_with_hits(raw, hits), "c@d.example",
                     policy, load_scores(), {"clamav": "virus"})
    assert (verdict.category, verdict.destiny, verdict.score) == ("CLEAN", Destiny.PASS, 0.1)


def _with_hits(raw: bytes, hits: list[Hit]) -> Task:
    task = make_task(raw)
    for hit in hits:
        task.add_hit(hit)
    return task


def test_third_party_spam_names_are_spam_their_malware_names_viruses(
        clamd: ClamdInstance) -> None:
    check = make_check([clamd.unix_endpoint], cache_size=0)
    junk = scan(check, b"Subject: offer\n\n" + JUNK + b"\n")
    assert junk == [Hit("CLAMAV_SPAM", factor=0.1,
                        options=("Sanesecurity.Junk.4711.UNOFFICIAL",))]
    malware = scan(check, b"Subject: invoice\n\n" + MALWARE + b"\n")
    assert malware == [Hit("CLAMAV_VIRUS", options=("Sanesecurity.Malware.815.UNOFFICIAL",))]
    assert [h.symbol for h in scan(check, eicar())] == ["CLAMAV_VIRUS"]
    off = make_check([clamd.unix_endpoint], virus_name_to_spam_score=())
    assert [h.symbol for h in scan(off, b"Subject: offer\n\n" + JUNK)] == ["CLAMAV_VIRUS"]


def test_a_spam_name_with_a_virus_in_the_same_answer_is_a_virus(tmp_path: Path) -> None:
    """amavis turns an answer into spam only when every name in it is spam."""
    async def go(answer: bytes, reuse: bool) -> tuple[list[Hit], FakeClamd]:
        async with FakeClamd(tmp_path / "fake.sock", answer) as fake:
            check = make_check([fake.endpoint], reuse_connections=reuse)
            hits = list(await check.run(make_task(b"payload")))
            check.close()
            return hits, fake

    both = (b"stream: Heuristics.Phishing.Email.SpoofedDomain FOUND\0"
            b"stream: Some.Virus FOUND\0")
    for reuse in (False, True):
        hits, fake = asyncio.run(go(both, reuse))
        assert hits == [Hit("CLAMAV_VIRUS", options=(
            "Heuristics.Phishing.Email.SpoofedDomain", "Some.Virus"))], reuse
    # on a kept session only the first record is read: a spam name is asked again
    # alone, read to the end, so the virus after it is not missed
    assert (fake.requests, fake.connections) == (2, 2)


def test_the_table_is_amavis_s_in_its_order() -> None:
    from scanner.checks.clamav_names import AMAVIS_SPAM_NAMES, NameTable

    table = NameTable(AMAVIS_SPAM_NAMES)
    assert len(AMAVIS_SPAM_NAMES) == 33
    expect = {
        "Heuristics.Phishing.Email.SpoofedDomain": 0.1,
        "Html.Phishing.Bank-1": None,  # amavis writes HTML, clamav Html
        "Structured.CreditCardNumber": 0.1,
        "Sanesecurity.Foxhole.Zip_exe.UNOFFICIAL": 0.1,   # before the Foxhole exception
        "Sanesecurity.Foxhole.Mail_tar.UNOFFICIAL": 0.0,
        "Sanesecurity.Foxhole.JS_Zip_1.UNOFFICIAL": None,
        "Sanesecurity.Trojan.1234.UNOFFICIAL": None,
        "Sanesecurity.Jurlbl.Auto.abc.UNOFFICIAL": 0.1,
        "Email.Phishing.Sanesecurity.1": None,  # the look-ahead excludes it
        "Email.Phishing.Generic": 0.1,
        "Win.Trojan.Agent-1234": None,
        "Heuristics.Encrypted.Zip": None,
        "Email.Spam.Foo-SecuriteInfo.com": 0.1,
        "Win.Malware.Foo-SecuriteInfo.com": None,
        "MBL_NA.UNOFFICIAL": 0.1,
        "MBL_12345.UNOFFICIAL": None,
    }
    assert {name: table.spam_score(name) for name in expect} == expect


def test_the_table_is_checked_when_the_check_starts() -> None:
    settings = build(ClamAVSettings, {"virus_name_to_spam_score": [
        {"pattern": "^Local\\.Spam\\.", "score": 2.5},
        {"pattern": "^Local\\.", "virus": True}]}, "checks.settings.clamav", "t.toml")
    check = make_check(["unix:/nonexistent/clamd.ctl"],
                       virus_name_to_spam_score=settings.virus_name_to_spam_score)
    assert check.names.spam_score("Local.Spam.1") == 2.5
    assert check.names.spam_score("Local.Worm.1") is None
    bad = type(settings.virus_name_to_spam_score[0])("(unclosed")
    with pytest.raises(ConfigError, match=r"virus_name_to_spam_score\[0\] pattern"):
        make_check(["unix:/x"], virus_name_to_spam_score=(bad,))
    with pytest.raises(ConfigError, match="unknown key"):
        build(ClamAVSettings, {"virus_name_to_spam_score": [{"regex": "x"}]},
              "checks.settings.clamav", "t.toml")

"""The ``rules`` check in the pipeline: symbols, weights through the score table."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scanner.checks.base import CheckContext, LastGood
from scanner.checks.rules import Rules, RulesSettings
from scanner.config import load
from scanner.errors import ConfigError
from scanner.scores import load_scores
from scanner.task import ClientInfo
from scanner.testing.tasks import task_from_bytes

from .conftest import CORPUS


async def _inline(func, *args):  # type: ignore[no-untyped-def]
    return func(*args)


def _check(tmp_path: Path, last_good: LastGood | None = None, **kw: object) -> Rules:
    settings = RulesSettings(cache_dir=str(tmp_path / "cache"), **kw)  # type: ignore[arg-type]
    return Rules(settings, CheckContext(config=load(None), run_cpu=_inline,
                                        last_good=last_good or LastGood()))


def test_hits_carry_rule_scores_and_bad_header(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "local.cf").write_text(
        "body SITE_WORD /planning meeting/\nscore SITE_WORD 2.25\nscore SC_MISSING_DATE 3\n")
    check = _check(tmp_path, dirs=(str(tmp_path / "site"),))
    raw = (CORPUS / "hits" / "SC_MISSING_DATE.eml").read_bytes().replace(b"\n", b"\r\n")
    raw = b"Subject: dup\r\n" + raw
    with task_from_bytes(raw) as task:
        hits = {h.symbol: h for h in asyncio.run(check.run(task))}
    assert {"SITE_WORD", "SC_MISSING_DATE", "BAD_HEADER_DUPLICATE"} <= set(hits)
    table = load_scores()
    assert table.get("SITE_WORD").weight == 2.25
    assert table.get("SC_MISSING_DATE").weight == 3.0
    assert table.get("BAD_HEADER_DUPLICATE").category == "BAD-HEADER"
    assert hits["BAD_HEADER_DUPLICATE"].options[0] == "BAD-HEADER-8"


def test_timeout_symbol(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "evil.cf").write_text("body EVIL /(a|aa)+b/\n")
    check = _check(tmp_path, dirs=(str(tmp_path / "site"),), shipped=False, time_budget=0.2,
                   hyperscan=False)
    raw = b"From: a@example.org\r\nSubject: x\r\n\r\n" + b"a" * 80 + b"\r\n"
    with task_from_bytes(raw) as task:
        hits = {h.symbol: h for h in asyncio.run(check.run(task))}
    assert hits["RULES_TIMEOUT"].options == ("EVIL",)


def test_a_missing_rule_directory_stops_start_up_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    with pytest.raises(ConfigError) as err:
        _check(tmp_path, dirs=(str(tmp_path / "site"), str(tmp_path / "sitee")))
    assert "'checks.settings.rules.dirs[1]'" in str(err.value)
    assert "sitee' is not a directory" in str(err.value)
    with pytest.raises(ConfigError, match=r"rules\.sa_compat_paths\[0\]"):
        _check(tmp_path, sa_compat_paths=(str(tmp_path / "nope"),))
    check = _check(tmp_path, dirs=(str(tmp_path / "site"),))  # a reload keeps the rules
    (tmp_path / "site").rmdir()
    check.reload()
    assert "SC_MISSING_DATE" in check.ruleset.by_name


def test_a_reload_keeps_the_rules_when_a_rule_directory_is_gone(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SIGHUP after the site's rule directory was moved away dropped its rules without
    more than a 'problems' count; start-up refuses such a configuration, so the reload
    keeps what it has and says why."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "local.cf").write_text("header SITE_WORD Subject =~ /win/\nscore SITE_WORD 2\n")
    check = _check(tmp_path, dirs=(str(site),))
    (site / "local.cf").unlink()
    site.rmdir()
    with caplog.at_level("ERROR", logger="scanner"):
        check.reload()
    assert "SITE_WORD" in check.ruleset.by_name
    assert f"keeping the current rules: {site} is not a directory any more" in caplog.text


def test_a_new_worker_keeps_the_rules_when_a_rule_directory_went_away(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The site's rule directory is moved away while the filter runs, then a worker is
    replaced: the new worker's check refused the missing directory as start-up does, so
    every replacement died and no mail was served. A check built again in the process
    that built it first (the master at start-up; workers are forked from it) keeps the
    rules read then, as a reload does (tests/test_bayes_check.py proves the same for
    the model through a real worker replacement). What was read is passed on
    explicitly (``CheckContext.last_good``): without it the directory is refused."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "local.cf").write_text("header SITE_WORD Subject =~ /win/\nscore SITE_WORD 2\n")
    kept = LastGood()
    _check(tmp_path, kept, dirs=(str(site),))  # the master's, at start-up
    (site / "local.cf").unlink()
    site.rmdir()
    with caplog.at_level("ERROR", logger="scanner"):
        again = _check(tmp_path, kept, dirs=(str(site),))  # a replacement worker's
    assert "SITE_WORD" in again.ruleset.by_name
    assert f"keeping the rules read before: {site} is not a directory any more" in caplog.text
    with pytest.raises(ConfigError):  # other settings: nothing read before, refused
        _check(tmp_path, kept, dirs=(str(site),), score_set=1)
    with pytest.raises(ConfigError):  # nothing handed on: refused, as at start-up
        _check(tmp_path, dirs=(str(site),))


RELAY_RULES = (
    "header RDNS_NONE X-Spam-Relays-Untrusted =~ /^[^\\]]+ rdns= /\nscore RDNS_NONE 1.5\n"
    "header HELO_IS_RDNS X-Spam-Relays-Untrusted =~ /^[^\\]]+ rdns=(\\S+) helo=\\1 /i\n"
    "score HELO_IS_RDNS 0.5\n")


def test_relay_pseudo_headers_come_from_xforward_and_the_chain(tmp_path: Path) -> None:
    """SpamAssassin's RDNS_NONE (X-Spam-Relays-Untrusted) hits on the client Postfix
    saw: from XFORWARD when Postfix wrote no Received header, and through the trusted
    networks the rules check is given."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "relays.cf").write_text(RELAY_RULES)
    check = _check(tmp_path, dirs=(str(tmp_path / "site"),), shipped=False,
                   bad_header=False)
    raw = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n"
    nameless = ClientInfo(addr="198.51.100.9", name="unknown", helo="pc.example")
    with task_from_bytes(raw, client=nameless) as task:
        assert {h.symbol for h in asyncio.run(check.run(task))} == {"RDNS_NONE"}
    named = ClientInfo(addr="198.51.100.9", name="Mail.Example", helo="mail.example")
    with task_from_bytes(raw, client=named) as task:
        assert {h.symbol for h in asyncio.run(check.run(task))} == {"HELO_IS_RDNS"}
    # a relay of our own (10.0.0.0/8 trusted) handed it on: the hop below is the client
    inner = (b"Received: from pc.example (unknown [198.51.100.9]) by mx.example.net "
             b"(Postfix) with ESMTP id 4XyZ12; Mon, 2 Jun 2025 10:00:00 +0000\r\n" + raw)
    site = _check(tmp_path, dirs=(str(tmp_path / "site"),), shipped=False,
                  bad_header=False, trusted_networks=("127.0.0.0/8", "10.0.0.0/8"))
    relay = ClientInfo(addr="10.1.2.3", name="mx.example.net", helo="mx.example.net")
    with task_from_bytes(inner, client=relay) as task:
        assert {h.symbol for h in asyncio.run(site.run(task))} == {"RDNS_NONE"}
        # without 10.0.0.0/8 trusted, our relay itself is the first untrusted one
        assert {h.symbol for h in asyncio.run(check.run(task))} == {"HELO_IS_RDNS"}

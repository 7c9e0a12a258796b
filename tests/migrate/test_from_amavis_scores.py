"""from-amavis: @score_sender_maps (amavis's soft white/blacklist) becomes sender_scores:
the converted configuration gives each recipient and sender the points amavis's
white_black_list would add."""

from __future__ import annotations

from pathlib import Path

from scanner import config as cfgmod
from scanner.migrate.amavis import convert_to_toml
from scanner.pipeline.parse import parse_headers
from scanner.policy.decide import decide
from scanner.policy.effective import message_policy, recipient_policy
from scanner.scores import load_scores
from scanner.task import Envelope, Recipient, Task

SCORES = load_scores()


def _convert(tmp_path: Path, text: str) -> tuple[cfgmod.Config, list]:
    path = tmp_path / "amavisd.conf"
    path.write_text(text, encoding="utf-8")
    toml, conv = convert_to_toml([path])
    return cfgmod.loads(toml, "converted"), conv.notes


def _points(config: cfgmod.Config, rcpt: str, sender: str) -> float:
    raw = f"From: {sender}\r\nSubject: s\r\n\r\nx\r\n".encode()
    task = Task(mail_id="abcdefghijkl", raw=raw, log_id="1-1",
                envelope=Envelope(sender, (Recipient(rcpt),)))
    task.message = parse_headers(raw)
    policy = recipient_policy(message_policy(config, []), rcpt)
    verdict = decide(task, rcpt, policy, SCORES, {})
    return sum(h.factor for h in verdict.hits if h.symbol == "SENDER_SCORE")


def test_by_recipient_hashes_and_files_become_sender_scores(tmp_path: Path) -> None:
    friends = tmp_path / "friends"
    friends.write_text("# soft whitelist of the boss\npal@y.org -2\n.lists.example 1.5\n"
                       "zero@y.org 0\n")
    config, notes = _convert(tmp_path, (
        "@score_sender_maps = ({\n"
        "  '.' => [ { 'nobody@cert.org' => -3.0, '.sendmail.org' => -3,\n"
        "             'Offers@Shop.Example' => 5 } ],\n"
        f"  'boss@example.com' => [ {{ 'nobody@cert.org' => -1 }}, read_hash('{friends}') ],\n"
        "  '.sales.example.com' => [ { 'lead@crm.example' => -4 } ],\n"
        "});\n"))
    assert _points(config, "u@example.com", "nobody@cert.org") == -3.0
    assert _points(config, "u@example.com", "a@mx.sendmail.org") == -3.0
    assert _points(config, "u@example.com", "offers@shop.example") == 5.0
    assert _points(config, "u@example.com", "pal@y.org") == 0.0
    # the boss: his own tables plus the '.' ones, added up where both know the sender
    assert _points(config, "boss@example.com", "nobody@cert.org") == -4.0
    assert _points(config, "boss@example.com", "pal@y.org") == -2.0
    assert _points(config, "boss@example.com", "x@a.lists.example") == 1.5
    assert _points(config, "boss@example.com", "zero@y.org") == 0.0
    assert _points(config, "boss@example.com", "a@mx.sendmail.org") == -3.0
    # a '.domain' recipient key: the domain and its subdomains
    assert _points(config, "u@eu.sales.example.com", "lead@crm.example") == -4.0
    assert _points(config, "u@sales.example.com", "lead@crm.example") == -4.0
    assert _points(config, "u@example.com", "lead@crm.example") == 0.0
    reasons = " ".join(n.reason for n in notes)
    assert "2 sender tables merged into one" in reasons
    assert "nobody@cert.org also in the '.' tables" in reasons


def test_tables_that_cannot_be_read_are_noted(tmp_path: Path) -> None:
    config, notes = _convert(tmp_path, (
        "@score_sender_maps = ({ '.' => [ new_RE( [qr'^offers@'i => 5.0] ) ] });\n"))
    assert config.policy.sender_scores == {}
    assert any(n.target == "@score_sender_maps" and "by hand" in n.reason for n in notes)
    config, notes = _convert(tmp_path, (
        f"@score_sender_maps = ({{ '.' => [ read_hash('{tmp_path}/none') ] }});\n"))
    assert config.policy.sender_scores == {}
    assert any("cannot be read here" in n.reason for n in notes)

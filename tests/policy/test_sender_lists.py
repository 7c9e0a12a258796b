"""Sender lists as amavis's white_black_list reads them: the envelope sender and the
From addresses are both checked against allow_senders / block_senders (a listed one
of either counts; allow wins over block), and sender_scores is amavis's soft list
(@score_sender_maps): the points of the first of those addresses that has any are
added to the recipient's score as SENDER_SCORE."""

from __future__ import annotations

import logging

import pytest

from scanner.config import loads
from scanner.errors import ConfigError
from scanner.pipeline.parse import parse_headers
from scanner.policy.decide import decide
from scanner.policy.effective import message_policy, recipient_policy
from scanner.scores import load_scores
from scanner.task import ClientInfo, Envelope, Recipient, Task
from scanner.testing.sink import Sink
from tests.helpers import handle_at_sink

SCORES = load_scores()


def _raw(author: str) -> bytes:
    return (f"From: {author}\r\nTo: bob@example.test\r\nSubject: news\r\n"
            "Message-ID: <n1@esp.example>\r\n\r\nthis week\r\n").encode()


def _verdict(policy: str, sender: str, author: str, rcpt: str = "bob@example.test"):
    config = loads("[policy]\n" + policy, "t.toml")
    raw = _raw(author)
    task = Task(mail_id="abcdefghijkl", raw=raw, log_id="1-1",
                envelope=Envelope(sender, (Recipient(rcpt),)))
    task.message = parse_headers(raw)
    base = message_policy(config, [])
    return decide(task, rcpt, recipient_policy(base, rcpt), SCORES, {})


def _symbols(verdict) -> dict[str, float]:
    return {h.symbol: round(SCORES.get(h.symbol).weight * h.factor, 3) for h in verdict.hits}


@pytest.mark.parametrize(("sender", "author", "expected"), [
    ("bounce-7f3a@esp.example", "News <news@shop.example>", "SENDER_ALLOWLISTED"),
    ("news@shop.example", "x@elsewhere.example", "SENDER_ALLOWLISTED"),
    ("bounce-7f3a@esp.example", "x@elsewhere.example", None),
    ("", "News <news@shop.example>", "SENDER_ALLOWLISTED"),  # a bounce's From
])
def test_the_from_address_counts_as_the_envelope_sender_does(sender, author, expected):
    v = _verdict("allow_senders = ['@shop.example']\n", sender, author)
    assert [s for s in _symbols(v) if s.startswith("SENDER_")] == ([expected] if expected
                                                                   else [])


def test_an_allowed_address_wins_over_a_blocked_one():
    policy = "allow_senders = ['@shop.example']\nblock_senders = ['@esp.example']\n"
    assert set(_symbols(_verdict(policy, "b@esp.example", "n@shop.example"))) == \
        {"SENDER_ALLOWLISTED"}
    assert set(_symbols(_verdict(policy, "b@esp.example", "x@other.example"))) == \
        {"SENDER_BLOCKLISTED"}


def test_sender_scores_add_the_first_matching_addresses_points():
    policy = ("sender_scores = { '@.esp.example' = 1.5, 'news@shop.example' = -3.0, "
              "'@shop.example' = -1.0, '<>' = 2.0 }\ntag_level = -999.0\n")
    # the envelope sender comes first; its own most specific pattern decides
    assert _symbols(_verdict(policy, "b@mail.esp.example", "news@shop.example")) == \
        {"SENDER_SCORE": 1.5}
    assert _symbols(_verdict(policy, "news@shop.example", "x@other.example")) == \
        {"SENDER_SCORE": -3.0}
    assert _symbols(_verdict(policy, "b@other.example", "sales@shop.example")) == \
        {"SENDER_SCORE": -1.0}
    assert _symbols(_verdict(policy, "", "x@other.example")) == {"SENDER_SCORE": 2.0}
    assert _symbols(_verdict(policy, "b@other.example", "x@other.example")) == {}
    v = _verdict(policy, "news@shop.example", "x@other.example")
    assert v.score == -3.0


def test_a_recipient_table_has_its_own_sender_scores():
    policy = ("sender_scores = { '@shop.example' = -1.0 }\n"
              "[policy.recipients.\"boss@example.test\"]\n"
              "sender_scores = { '@shop.example' = 4.0 }\n")
    assert _symbols(_verdict(policy, "n@shop.example", "n@shop.example")) == \
        {"SENDER_SCORE": -1.0}
    assert _symbols(_verdict(policy, "n@shop.example", "n@shop.example",
                             rcpt="boss@example.test")) == {"SENDER_SCORE": 4.0}


def test_bypass_spam_checks_drops_them():
    policy = "sender_scores = { '@shop.example' = 9.0 }\nbypass_spam_checks = true\n"
    assert _symbols(_verdict(policy, "n@shop.example", "n@shop.example")) == {}


@pytest.mark.parametrize(("table", "message"), [
    ("sender_scores = { 'shop.example' = 1.0 }", "never matches; write '@shop.example'"),
    ("sender_scores = { '@shop.example' = 'a lot' }", "must be a number"),
])
def test_bad_sender_scores_name_the_key(table, message):
    with pytest.raises(ConfigError, match=message) as exc:
        loads(f"[policy]\n{table}\n", "site.toml")
    assert "site.toml" in str(exc.value) and "sender_scores" in str(exc.value)


def test_through_the_filter_the_points_show_in_the_spam_headers(sink: Sink, caplog):
    config = loads("[checks]\nenabled = []\n[quarantine]\nampdp_socket = \"\"\n"
                   "[policy]\nlocal_domains = ['example.test']\ntag_level = -999.0\n"
                   "sender_scores = { '@shop.example' = -2.5 }\n", "t.toml")
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=_raw("n@shop.example"),
                envelope=Envelope("bounce-1@esp.example", (Recipient("bob@example.test"),)),
                client=ClientInfo(addr="192.0.2.7", helo="mx.esp.example"))
    with caplog.at_level(logging.INFO, "scanner"):
        replies = handle_at_sink(config, [], task, sink.port)
    assert all(r.startswith("250") for r in replies), replies
    head = sink.wait_for(1)[0].data.split(b"\r\n\r\n")[0].decode()
    assert "X-Spam-Score: -2.5" in head
    assert "SENDER_SCORE=-2.5" in " ".join(head.split())
    assert "Hits: -2.5" in caplog.text


def test_a_policy_sql_row_sets_sender_scores_and_a_bad_one_is_refused(tmp_path):
    import json
    import sqlite3

    from scanner.policy.sql import SqlPolicy
    db = tmp_path / "policy.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings TEXT)")
        conn.executemany("INSERT INTO scanner_policy VALUES (?, ?)", [
            ("@example.test", json.dumps({"sender_scores": {"@shop.example": -2.0}})),
            ("bad@example.test", json.dumps({"sender_scores": {"shop.example": 1}}))])
    config = loads(f'[policy]\nsql_lookup = "sqlite:{db}"\n', "t.toml")
    source = SqlPolicy(f"sqlite:{db}", config)
    assert dict(source.override_for("u@example.test").sender_scores) == {"@shop.example": -2.0}
    assert any("sender_scores" in problem and "never matches" in problem
               for problem in source.audit())
    source.close()

"""``scanner quarantine digest``: who gets a digest, what it lists, and what cron sees.

The grouping and the text are checked directly (scanner.quarantine.digest); the
command runs as cron runs it, against a quarantine on disk and a real SMTP next hop
(the test sink), including the next hop down and refusing.
"""

from __future__ import annotations

import email
import email.policy
import sqlite3
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from scanner import config as cfgmod
from scanner.config import loads
from scanner.notices import load_templates
from scanner.quarantine import digest as dg
from scanner.quarantine.store import Quarantine
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink

from .test_cli import cli
from .util import config_text, store

POLICY = ('[policy]\nlocal_domains = ["example.test"]\nspam_destiny = "discard"\n'
          'virus_destiny = "discard"\n')


def _parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def _body(msg: EmailMessage) -> str:
    return msg.get_content().replace("\r\n", "\n")


def test_one_digest_per_local_recipient_newest_first(quarantine: Quarantine):
    policy = loads(POLICY).policy
    old = store(quarantine, subject="old one", recipients=["bob@example.test"])
    time.sleep(0.01)  # a later stored_at
    both = store(quarantine, subject="for both",
                 recipients=["Bob@Example.test", "carol@example.test", "x@elsewhere.org"])
    released = store(quarantine, subject="released", recipients=["bob@example.test"])
    quarantine.index.finish(released.mail_id, quarantine.index.claim(released.mail_id, "t"),
                            ["bob@example.test"], ["250 ok"])
    digests = dg.collect(quarantine.records(), policy)
    assert [d.recipient for d in digests] == ["bob@example.test", "carol@example.test"]
    bob, carol = digests
    assert [r.mail_id for r in bob.records] == [both.mail_id, old.mail_id]  # newest first
    assert [r.mail_id for r in carol.records] == [both.mail_id]
    # x@elsewhere.org is not local: no digest; a released message is not listed
    only = dg.collect(quarantine.records(), policy, ["CAROL@example.test"])
    assert [d.recipient for d in only] == ["carol@example.test"]


def test_rcpt_takes_the_policys_address_patterns(quarantine: Quarantine):
    policy = loads(POLICY.replace('"example.test"]', '".example.test"]')).policy
    store(quarantine, recipients=["bob@example.test", "ann@sales.example.test",
                                  "bob+spam@sales.example.test"])
    def only(*patterns: str) -> list[str]:
        return [d.recipient for d in dg.collect(quarantine.records(), policy, patterns)]
    assert only("@sales.example.test") == ["ann@sales.example.test",
                                           "bob+spam@sales.example.test"]
    assert only("@.example.test") == ["ann@sales.example.test", "bob+spam@sales.example.test",
                                      "bob@example.test"]
    assert only("bob@") == ["bob+spam@sales.example.test", "bob@example.test"]
    assert only("<bob@example.test>") == ["bob@example.test"]


def test_a_recipient_table_can_make_an_address_local_or_not(quarantine: Quarantine):
    policy = loads(POLICY + '[policy.recipients."nobody@example.test"]\nlocal = false\n'
                   '[policy.recipients."@partner.org"]\nlocal = true\n').policy
    store(quarantine, recipients=["nobody@example.test", "ann@partner.org",
                                  "zed@example.test"])
    assert [d.recipient for d in dg.collect(quarantine.records(), policy)] == [
        "ann@partner.org", "zed@example.test"]


def test_a_copy_the_recipient_got_is_not_listed(quarantine: Quarantine):
    """quarantine_passed keeps a spam lover's delivered copy in the same row as the
    held ones: the lover is not told it was held; a spam_destiny of pass likewise."""
    policy = loads(POLICY + 'quarantine_passed = ["spam"]\n'
                   '[policy.recipients."lover@example.test"]\nspam_lover = true\n'
                   '[policy.recipients."tagged@example.test"]\nspam_destiny = "pass"\n'
                   '[policy.recipients."rejecter@example.test"]\nspam_destiny = "reject"\n'
                   ).policy
    rec = store(quarantine, recipients=["lover@example.test", "tagged@example.test",
                                        "rejecter@example.test", "bob@example.test"])
    store(quarantine, category="CLEAN", recipients=["bob@example.test"])
    digests = dg.collect(quarantine.records(), policy)
    assert [(d.recipient, [r.mail_id for r in d.records]) for d in digests] == [
        ("bob@example.test", [rec.mail_id]), ("rejecter@example.test", [rec.mail_id])]


def test_who_is_told_follows_what_was_recorded_not_todays_policy(quarantine: Quarantine):
    """A row records whom its message was held for when it was stored: a recipient
    whose policy has since changed to pass is still told, and one whose copy went on
    (a lover's then) is not, though its policy now discards spam. The rows of
    test_a_copy_the_recipient_got_is_not_listed recorded nothing (stored before the
    index kept it): there today's policy decides."""
    policy = loads(POLICY + '[policy.recipients."now-passes@example.test"]\n'
                   'spam_destiny = "pass"\n').policy
    rec = store(quarantine, recipients=["now-passes@example.test", "got-it@example.test"],
                held_for=["Now-Passes@example.test"])
    kept = store(quarantine, recipients=["bob@example.test"], held_for=[])
    digests = dg.collect(quarantine.records(), policy)
    assert [(d.recipient, [r.mail_id for r in d.records]) for d in digests] == [
        ("now-passes@example.test", [rec.mail_id])]
    assert kept.mail_id not in {r.mail_id for d in digests for r in d.records}


def test_the_text_lists_each_message_and_how_to_get_it(quarantine: Quarantine):
    rec = store(quarantine, subject="Gewinn! Sie haben\r\nX-Injected: yes",
                recipients=["bob@example.test"])
    [digest] = dg.collect(quarantine.records(), loads(POLICY).policy)
    data, utf8 = dg.render(digest, hostname="mx.example.test", period="since yesterday")
    assert not utf8
    msg = _parsed(data)
    assert msg["To"].addresses[0].addr_spec == "bob@example.test"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"] == "1 message(s) held for you in quarantine"
    assert msg["Precedence"] == "bulk" and "X-Injected" not in msg
    body = _body(msg)
    assert "held these messages addressed to you since yesterday" in body
    assert f"  Id:      {rec.mail_id}\n" in body
    assert "  From:    <spam@example.org>\n" in body
    assert "  Subject: Gewinn! Sie haben  X-Injected: yes\n" in body  # no line break
    assert "SPAM, score 9.5" in body
    assert "ask your mail administrator" in body and "Release:" not in body
    url = "https://mail.example.test/release?id={mail_id}&s={secret_id}&to={recipient}"
    body = _body(_parsed(dg.render(digest, hostname="mx", period="p", release_url=url)[0]))
    assert (f"  Release: https://mail.example.test/release?id={rec.mail_id}"
            f"&s={rec.secret_id}&to=bob@example.test\n") in body
    assert "open its Release link" in body and "ask your mail administrator" not in body


def test_a_recipient_cannot_add_url_parameters(quarantine: Quarantine):
    rec = store(quarantine, recipients=["a&admin=1@example.test"])
    link = dg.release_link("https://x/r?to={recipient}&id={mail_id}", rec,
                           "a&admin=1@example.test")
    assert link == f"https://x/r?to=a%26admin%3D1@example.test&id={rec.mail_id}"


def test_a_long_list_is_cut_and_counted(quarantine: Quarantine):
    for i in range(5):
        store(quarantine, subject=f"spam {i}")
    [digest] = dg.collect(quarantine.records(), loads(POLICY).policy)
    body = _body(_parsed(dg.render(digest, hostname="mx", period="p", max_listed=2)[0]))
    assert body.count("  Id: ") == 2 and "... and 3 older message(s), not listed here." in body
    assert "5 message(s) held" in _parsed(dg.render(digest, hostname="mx", period="p")[0]
                                          )["Subject"]


def test_a_utf8_address_is_written_for_smtputf8(quarantine: Quarantine):
    store(quarantine, recipients=["jörg@example.test"])
    [digest] = dg.collect(quarantine.records(), loads(POLICY).policy)
    data, utf8 = dg.render(digest, hostname="mx", period="p")
    assert utf8 and "<jörg@example.test>".encode() in data


def test_a_site_template_rewords_it(tmp_path: Path, quarantine: Quarantine):
    (tmp_path / "digest.txt").write_text(
        "Subject: Quarantäne: $count\n\nFür $recipient:\n$messages\n", encoding="utf-8")
    store(quarantine)
    [digest] = dg.collect(quarantine.records(), loads(POLICY).policy)
    data, _ = dg.render(digest, hostname="mx", period="p",
                        templates=load_templates(str(tmp_path)))
    msg = _parsed(data)
    assert msg["Subject"] == "Quarantäne: 1"
    assert _body(msg).startswith("Für bob@example.test:\n20")


@pytest.mark.parametrize(("url", "error"), [
    ("ftp://x/{mail_id}", "is not an http:// or https:// URL"),
    ("https://x/{mailid}", "unknown field {mailid}; use {mail_id}, {secret_id}, {recipient}"),
    ("https://x/{mail_id!r}", "write {mail_id} without a conversion or format"),
    ("https://x/{", "write {{ and }} for braces"),
])
def test_a_bad_release_url_stops_start_up_naming_the_key(url: str, error: str):
    with pytest.raises(cfgmod.ConfigError) as err:
        loads(f'[quarantine]\ndigest_release_url = "{url}"\n', "site.toml")
    assert "site.toml" in str(err.value) and "quarantine.digest_release_url" in str(err.value)
    assert error in str(err.value)


def _setup(tmp_path: Path, port: int, extra: str = "") -> tuple[Path, Quarantine]:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "scanner.toml"
    path.write_text(config_text(tmp_path / "q", port, extra=POLICY + extra), encoding="utf-8")
    return path, Quarantine(cfgmod.load(str(path)).quarantine)


def test_cron_sends_one_digest_per_recipient_through_the_next_hop(tmp_path: Path, sink: Sink):
    config, q = _setup(tmp_path, sink.port)
    spam = store(q, recipients=["bob@example.test", "carol@example.test"])
    virus = store(q, category="VIRUS", recipients=["bob@example.test"])
    out = cli(config, "digest")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines == [f"<bob@example.test>: 1 message(s): {lines[0].split(': ', 2)[2]}",
                     f"<carol@example.test>: 1 message(s): {lines[1].split(': ', 2)[2]}"]
    assert all(": 250 2.0.0 from MTA(smtp:[127.0.0.1]:" in line for line in lines)
    assert b"2 digest(s) sent" in out.stderr
    received = sink.wait_for(2)
    assert [(r.sender, r.recipients) for r in received] == [
        ("<>", ["bob@example.test"]), ("<>", ["carol@example.test"])]  # the null sender
    body = _body(_parsed(received[0].data))
    assert spam.mail_id in body and virus.mail_id not in body  # SPAM only by default
    assert q.get(spam.mail_id).state == "held"  # a digest changes nothing
    out = cli(config, "digest", "--category", "virus", "--category", "spam",
              "--rcpt", "bob@example.test", "--dry-run")
    assert out.returncode == 0 and b"1 digest(s) would be sent" in out.stderr
    text = out.stdout.decode()
    assert text.startswith("--- digest to <bob@example.test> ---\n")
    assert spam.mail_id in text and virus.mail_id in text and "\r" not in text
    assert len(sink.received) == 2  # a dry run sends nothing
    out = cli(config, "digest", "--since", "2000-01-01", "--rcpt", "nobody@example.test")
    assert out.returncode == 0 and b"0 digest(s) sent" in out.stderr


def test_cron_is_told_when_to_try_again(tmp_path: Path, sink: Sink):
    config, q = _setup(tmp_path, free_port())
    store(q)
    out = cli(config, "digest")
    assert out.returncode == 75, out.stderr  # EX_TEMPFAIL: the next hop is down
    assert b"<bob@example.test>: 1 message(s): 451 4.4.1 Next hop" in out.stdout
    assert b"1 of 1 digest(s) not sent through the next hop smtp:[127.0.0.1]:" in out.stderr
    assert b"run again to send them" in out.stderr
    config, q = _setup(tmp_path / "refused", sink.port)
    sink.behaviour.rcpt_reply = lambda rcpt: "550 5.1.1 no such user"
    store(q)
    out = cli(config, "digest")
    assert out.returncode == 1, out.stderr
    assert b"550 5.1.1 no such user" in out.stdout and b"once the refusal is fixed" in out.stderr


def test_bad_options_are_usage_errors(tmp_path: Path, sink: Sink):
    config, _ = _setup(tmp_path, sink.port)
    out = cli(config, "digest", "--max-listed", "0")
    assert out.returncode == 2 and b"--max-listed 0: give 1 or more" in out.stderr
    out = cli(config, "digest", "--category", "junk")
    assert out.returncode == 2 and b"is not a quarantine category" in out.stderr


def _sql(path: Path, rows: dict[str, str]) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings)")
        conn.executemany("INSERT INTO scanner_policy VALUES (?, ?)", list(rows.items()))
    conn.close()
    return f'sql_lookup = "sqlite:{path}"\n'


def test_policy_sql_rows_decide_as_for_a_message(tmp_path: Path, quarantine: Quarantine):
    """A recipient's SQL row (as the filter reads it for each message) can make it not
    local, make its spam pass, or make an outside address local."""
    sql = _sql(tmp_path / "policy.sqlite", {
        "bob@example.test": '{"local": false}',
        "carol@example.test": '{"spam_destiny": "pass"}',
        "ann@partner.org": '{"local": true}'})
    config = loads(POLICY + sql + f'[quarantine]\ndirectory = "{tmp_path}/q"\n', "t.toml")
    store(quarantine, recipients=["bob@example.test", "carol@example.test",
                                  "dave@example.test", "ann@partner.org"])
    records = list(quarantine.records())
    rows = dg.source_rows(config, dg.candidates(records, (), "+"))
    assert [d.recipient for d in dg.collect(records, config.policy, (), rows)] == [
        "ann@partner.org", "dave@example.test"]
    # without the rows, the static policy alone
    assert [d.recipient for d in dg.collect(records, config.policy)] == [
        "bob@example.test", "carol@example.test", "dave@example.test"]


def test_an_unreadable_policy_source_sends_nothing_and_says_try_again(tmp_path: Path,
                                                                        sink: Sink):
    bad = tmp_path / "policy.sqlite"
    bad.write_text("not a database")
    config, q = _setup(tmp_path, sink.port, f'sql_lookup = "sqlite:{bad}"\n')
    store(q)
    out = cli(config, "digest")
    assert out.returncode == 75, out.stderr
    assert b"lookup failed" in out.stderr and b"no digest sent, try again later" in out.stderr
    assert sink.received == []

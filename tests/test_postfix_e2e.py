"""End to end through a real Postfix: injection -> content_filter -> scanner -> reinjection
-> Maildir. Needs root and the postfix package (skipped with the reason otherwise)."""

from __future__ import annotations

import concurrent.futures
import smtplib

import pytest

from tests.postfix_stack import Stack, delivered_ids, require_postfix, split_delivered, wait_ids

pytestmark = pytest.mark.postfix


@pytest.fixture(scope="module")
def stack():
    require_postfix()
    s = Stack().start()
    yield s
    s.remove()


def _msg(mid: str, body: bytes = b"Hello.\r\n", headers: bytes = b"") -> bytes:
    return (b"From: Alice <alice@example.org>\r\nTo: bob@example.test\r\n"
            b"Subject: e2e " + mid.encode() + b"\r\nMessage-ID: <" + mid.encode() +
            b"@example.org>\r\n" + headers + b"\r\n" + body)


def test_clean_mail_gets_trace_header_and_body_is_untouched(stack: Stack):
    body = (b"Line one.\r\n.leading dot line\r\n\r\nTabs\tand trailing spaces   \r\n"
            + b"x" * 990 + b"\r\nlast line without newline")
    qid = stack.postfix.send("alice@example.org", "bob@example.test", _msg("clean1", body))
    wait_ids(stack, {"<clean1@example.org>"}, 30)
    path = [p for p in stack.postfix.maildir_messages("bob")
            if b"clean1@example.org" in p.read_bytes()][0]
    head, got_body = split_delivered(path.read_bytes())
    assert got_body == body.replace(b"\r\n", b"\n") + b"\n"
    assert f"(scanner, port {stack.filter_port}) with ESMTP id".encode() in head
    lines = [ln for ln in stack.filter.summary_lines() if "clean1@example.org" in ln]
    assert len(lines) == 1
    assert "Passed CLEAN {RelayedInbound}, LOCAL [127.0.0.1]:" in lines[0]  # in mynetworks
    assert f"Queue-ID: {qid}," in lines[0]
    assert "queued_as: " in lines[0]
    # Postfix's log shows the amavis-style 250 quoting the reinjection's reply
    assert "250 2.0.0 from MTA(smtp:[127.0.0.1]:" in stack.postfix.log_text()


def test_8bit_and_smtputf8_mail_intact(stack: Stack):
    body8 = "Grüße aus Köln – naïve café.\r\n".encode()
    stack.postfix.send("alice@example.org", "bob@example.test",
                       _msg("eightbit", body8, b"Content-Type: text/plain; charset=utf-8\r\n"
                            b"Content-Transfer-Encoding: 8bit\r\n"),
                       mail_options=["BODY=8BITMIME"])
    utf_headers = "Subject2: Ünïcödé ✓\r\n".encode()
    stack.postfix.send("jürgen@example.org", "bob@example.test",
                       _msg("utf8", body8, utf_headers), mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    wait_ids(stack, {"<eightbit@example.org>", "<utf8@example.org>"}, 30)
    for path in stack.postfix.maildir_messages("bob"):
        raw = path.read_bytes()
        if b"eightbit@" in raw or b"utf8@" in raw:
            assert split_delivered(raw)[1] == body8.replace(b"\r\n", b"\n")
        if b"utf8@" in raw:
            assert "Ünïcödé ✓".encode() in raw
            assert "jürgen@example.org".encode() in raw  # Return-Path kept in UTF-8


def test_fifty_recipients_in_one_message(stack: Stack):
    rcpts = [f"user{i}@example.test" for i in range(50)]
    stack.postfix.send("alice@example.org", rcpts, _msg("fifty"))
    for i in range(50):
        paths = stack.postfix.wait_delivered(1, 30, user=f"user{i}")
        assert sum(b"fifty@example.org" in p.read_bytes() for p in paths) == 1
    lines = [ln for ln in stack.filter.summary_lines() if "fifty@example.org" in ln]
    assert len(lines) == 1 and lines[0].count("@example.test>") == 50


def test_twenty_concurrent_connections(stack: Stack):
    def client(n: int) -> list[str]:
        sent = []
        with smtplib.SMTP("127.0.0.1", stack.postfix.smtpd_port, timeout=60) as s:
            s.ehlo("client.test")
            for k in range(5):
                mid = f"conc-{n}-{k}"
                s.sendmail("alice@example.org", ["carol@example.test"], _msg(mid))
                sent.append(f"<{mid}@example.org>")
        return sent

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        wanted = {m for batch in pool.map(client, range(20)) for m in batch}
    ids = wait_ids(stack, wanted, 60)
    assert all(ids[m] == 1 for m in wanted), "duplicates delivered"


def test_bad_input_gets_a_clean_outcome(stack: Stack):
    nul = _msg("nulbyte", b"binary \x00 junk \xff\xfe\r\n")
    bad_hdr = _msg("badheader", b"x\r\n", b"X-Bad: \xff\xfe\x80 raw 8bit\r\nNoColonHere\r\n")
    for raw in (nul, bad_hdr):
        stack.postfix.send("alice@example.org", "dave@example.test", raw)
    ids = wait_ids(stack, {"<nulbyte@example.org>", "<badheader@example.org>"}, 30)
    assert ids["<nulbyte@example.org>"] == 1 and ids["<badheader@example.org>"] == 1
    assert delivered_ids(stack, "dave")

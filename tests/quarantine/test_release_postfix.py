"""Release through the real Postfix: an SMTPUTF8 message with ASCII addresses and DSN
parameters, quarantined by ``scanner serve``, is listed with its UTF-8 Subject and,
released, goes out as it came in: Postfix delivers it with the Subject intact and, as
the sender asked (NOTIFY=SUCCESS), sends her its own success DSN, which shows what the
release transaction carried: RFC 6533 message/global-* parts for SMTPUTF8 mail, the
ENVID, the recipient's ORCPT, and headers only (RET=HDRS)."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.postfix_stack import Stack, require_postfix, wait_ids
from tests.postfix_stack import summary_line as _line

pytestmark = [pytest.mark.postfix, pytest.mark.slow]

POLICY = """
[checks]
enabled = []
[policy]
local_domains = ["example.test"]
[policy.recipients."held@example.test"]
spam_destiny = "discard"
block_senders = ["alice@example.test", "jörg@example.test"]
"""


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_postfix()
    s = Stack(extra=POLICY).start()
    s.postfix.add_users("held")
    yield s
    s.remove()


def _scanner(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner", "quarantine", *args,
                           "--config", str(stack.filter.config_path)],
                          capture_output=True, text=True, timeout=60)


def _success_dsn(stack: Stack, mid: str, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in stack.postfix.maildir_messages("alice"):
            raw = path.read_bytes()
            if f"<{mid}@example.org>".encode() in raw and b"Action: delivered" in raw:
                return raw
        time.sleep(0.2)
    raise AssertionError("no success DSN for the sender\n" + stack.postfix.log_tail(30))


def test_a_released_smtputf8_message_goes_out_as_it_came_in(stack: Stack):
    subject = "Grüße aus Köln, release8"
    data = ("From: alice@example.test\r\nTo: held@example.test\r\n"
            f"Subject: {subject}\r\nMessage-ID: <release8@example.org>\r\n\r\n"
            "Grüße\r\n").encode()
    stack.postfix.send("alice@example.test", "held@example.test", data,
                       mail_options=["SMTPUTF8", "BODY=8BITMIME", "RET=HDRS",
                                     "ENVID=release8+2Benvid"],
                       rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
    line = _line(stack, "release8")
    assert "{DiscardedInbound,Quarantined}" in line, line
    mail_id = line.split("mail_id: ")[1].split(",")[0]

    listed = _scanner(stack, "list")
    assert listed.returncode == 0, listed.stderr
    assert subject in listed.stdout and "\ufffd" not in listed.stdout, listed.stdout

    run = _scanner(stack, "release", mail_id)
    assert run.returncode == 0, run.stderr
    wait_ids(stack, {"<release8@example.org>"}, 30)
    got = [p.read_bytes() for p in stack.postfix.maildir_messages("held")
           if b"<release8@example.org>" in p.read_bytes()]
    assert len(got) == 1 and f"Subject: {subject}".encode() in got[0]

    dsn = email.message_from_bytes(_success_dsn(stack, "release8"),
                                   policy=email.policy.default)
    types = [p.get_content_type() for p in dsn.iter_parts()]
    assert types == ["text/plain", "message/global-delivery-status",
                     "message/global-headers"], types  # SMTPUTF8; RET=HDRS
    status = dsn.get_payload()[1].as_bytes()
    assert b"Original-Envelope-Id: release8+envid" in status, status
    assert b"Original-Recipient: rfc822;held@example.test" in status, status


def test_a_utf8_sender_is_listed_and_released_as_it_came_in(stack: Stack):
    """The envelope sender ``list`` shows (its From column) and the release uses."""
    data = ("From: jörg@example.test\r\nTo: held@example.test\r\n"
            "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_release9?=\r\n"
            "Message-ID: <release9@example.org>\r\n\r\nhello\r\n").encode()
    stack.postfix.send("jörg@example.test", "held@example.test", data,
                       mail_options=["SMTPUTF8"])
    line = _line(stack, "release9")
    assert "{DiscardedInbound,Quarantined}" in line, line
    mail_id = line.split("mail_id: ")[1].split(",")[0]
    listed = _scanner(stack, "list").stdout
    row = next(ln for ln in listed.splitlines() if mail_id in ln)
    assert "<jörg@example.test> -> held@example.test  'Grüße release9'" in row, row
    run = _scanner(stack, "release", mail_id)
    assert run.returncode == 0, run.stderr
    wait_ids(stack, {"<release9@example.org>"}, 30)
    got = [p.read_bytes() for p in stack.postfix.maildir_messages("held")
           if b"<release9@example.org>" in p.read_bytes()]
    assert len(got) == 1 and "Return-Path: <jörg@example.test>".encode() in got[0]

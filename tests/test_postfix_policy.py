"""Policy and actions through the real Postfix: each category with its destiny ends where
it should (Maildir, quarantine, DSN in the sender's Maildir, 5xx in Postfix's log), with
the right headers and log line; mixed recipients are split; release round trip; a
broken quarantine defers mail until it works again."""

from __future__ import annotations

import base64
import email
import email.policy
import io
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from scanner.testing.clamd import ClamdInstance, clamd_binary, eicar
from scanner.testing.postfix import make_base_dir
from tests.helpers import mime_tools_structure
from tests.postfix_stack import (
    Stack,
    require_postfix,
    split_delivered,
    summary_lines,
    wait_ids,
)
from tests.postfix_stack import summary_line as _line

pytestmark = [pytest.mark.postfix, pytest.mark.slow]

POLICY = """
[policy]
local_domains = ["example.test"]
[policy.recipients."bouncer@example.test"]
banned_destiny = "bounce"
[policy.recipients."warned@example.test"]
notify_recipient = ["banned"]
notify_admin = { banned = "postmaster@example.test" }
[policy.recipients."rejecter@example.test"]
spam_destiny = "reject"
block_senders = ["@spam.example"]
[policy.recipients."dave@example.test"]
spam_destiny = "discard"
block_senders = ["@spam.example"]
[policy.recipients."lover@example.test"]
spam_lover = true
spam_destiny = "discard"
block_senders = ["@spam.example"]
[policy.recipients."tagged@example.test"]
block_senders = ["@spam.example"]
"""


@pytest.fixture(scope="module")
def stack():
    require_postfix()
    if clamd_binary() is None:
        pytest.skip("clamd not installed (apt-get install clamav-daemon)")
    clamd = ClamdInstance(make_base_dir("scanner-clamd-"))
    clamd.start()
    extra = (f'\n[checks]\ndisabled = ["auth", "dnsbl", "uribl", "bayes"]\n'
             f'[checks.settings.clamav]\nendpoints = ["{clamd.unix_endpoint}"]\n' + POLICY)
    s = Stack(extra=extra, domains=("example.test", "exämple.test")).start()
    s.postfix.add_users("bouncer", "rejecter", "lover", "tagged", "warned", "postmaster")
    yield s
    s.remove()
    clamd.close()


def _msg(mid: str, body: bytes = b"hello\r\n", headers: bytes = b"",
         sender: str = "alice@example.test") -> bytes:
    return (b"From: " + sender.encode() + b"\r\nTo: someone@example.test\r\n"
            b"Subject: policy " + mid.encode() + b"\r\nMessage-ID: <" + mid.encode() +
            b"@example.org>\r\n" + headers + b"\r\n" + body)


def _banned(mid: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("setup.exe.txt", b"harmless")
        z.writestr("invoice.pdf.exe", b"MZ harmless")
    b64 = base64.encodebytes(buf.getvalue()).replace(b"\n", b"\r\n")
    return _msg(mid, b"--b\r\nContent-Type: text/plain\r\n\r\nsee zip\r\n--b\r\n"
                b"Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n"
                b'Content-Disposition: attachment; filename="docs.zip"\r\n\r\n' + b64 +
                b"--b--\r\n",
                b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n')


def _mail_id(line: str) -> str:
    return line.split("mail_id: ")[1].split(",")[0]


def _delivered_to(stack: Stack, user: str, mid: str) -> list[bytes]:
    return [p.read_bytes() for p in stack.postfix.maildir_messages(user)
            if f"<{mid}@example.org>".encode() in p.read_bytes()]


def test_virus_is_discarded_and_quarantined(stack: Stack):
    stack.postfix.send("alice@example.test", "bob@example.test", _msg("virus1", eicar() + b"\r\n"))
    line = _line(stack, "virus1")
    assert "Blocked INFECTED (" in line and "{DiscardedInbound,Quarantined}" in line
    mail_id = _mail_id(line)
    assert f"quarantine: {mail_id[0]}/virus-{mail_id}.gz" in line
    assert _delivered_to(stack, "bob", "virus1") == []


def test_banned_with_bounce_destiny_sends_dsn_to_sender(stack: Stack, tmp_path):
    stack.postfix.send("alice@example.test", "bouncer@example.test", _banned("banned1"))
    line = _line(stack, "banned1")
    assert "Blocked BANNED (" in line and "{BouncedInbound,Quarantined}" in line
    deadline = time.monotonic() + 30
    dsn = []
    while time.monotonic() < deadline and not dsn:
        dsn = [p.read_bytes() for p in stack.postfix.maildir_messages("alice")
               if b"banned1@example.org" in p.read_bytes()
               and b"multipart/report" in p.read_bytes()]
        time.sleep(0.2)
    assert dsn, "no DSN in the sender's Maildir"
    assert b"Final-Recipient: rfc822; bouncer@example.test" in dsn[0]
    assert b"Action: failed" in dsn[0] and b"Status: 5.7.0" in dsn[0]
    # as amavis's: only the header section returns, never the banned file
    assert b"Content-Type: text/rfc822-headers" in dsn[0]
    assert b'filename="docs.zip"' not in dsn[0] and b"see zip" not in dsn[0]
    assert _delivered_to(stack, "bouncer", "banned1") == []
    # read back as delivered, by the email package and by Perl's MIME-tools
    msg = email.message_from_bytes(dsn[0], policy=email.policy.default)
    report = list(msg.iter_parts())[1]
    per_msg, per_rcpt = report.get_payload()
    assert per_msg["Reporting-MTA"].startswith("dns; ") and per_msg["Arrival-Date"]
    assert (per_rcpt["Action"], per_rcpt["Status"]) == ("failed", "5.7.0")
    assert msg["Auto-Submitted"] == "auto-replied" and msg["Message-ID"] and msg["Date"]
    assert mime_tools_structure(dsn[0], tmp_path) == [
        "delivery-status", "text/plain 7bit", "message/delivery-status 7bit",
        "text/rfc822-headers 7bit"]


def test_dsn_for_smtputf8_mail_reaches_a_utf8_sender(stack: Stack, tmp_path):
    """The DSN to alice@exämple.test went out without SMTPUTF8: Postfix's smtpd refused
    the recipient (501 5.1.3 Bad recipient address syntax), we logged it, and the sender
    never heard of the bounce. Now it arrives, in RFC 6533 form, as Postfix's own
    bounce of SMTPUTF8 mail: message/global-delivery-status, message/global-headers."""
    sender = "alice@exämple.test"
    data = _banned("banned8").replace(b"Subject: policy banned8",
                                         "Subject: Grüße banned8".encode())
    stack.postfix.send(sender, "bouncer@example.test", data, mail_options=["SMTPUTF8"])
    line = _line(stack, "banned8")
    assert "{BouncedInbound,Quarantined}" in line, line
    deadline = time.monotonic() + 30
    dsn = []
    while time.monotonic() < deadline and not dsn:
        dsn = [p.read_bytes() for p in stack.postfix.maildir_messages("alice")
               if "exämple.test" in str(p) and b"banned8@example.org" in p.read_bytes()]
        time.sleep(0.2)
    assert dsn, "no DSN in the sender's Maildir\n" + stack.postfix.log_tail(20)
    msg = email.message_from_bytes(dsn[0], policy=email.policy.default)
    assert msg["Auto-Submitted"] == "auto-replied" and msg["To"] == sender
    assert [p.get_content_type() for p in msg.iter_parts()] == [
        "text/plain", "message/global-delivery-status", "message/global-headers"]
    assert b"Final-Recipient: rfc822; bouncer@example.test" in dsn[0]
    assert b"Status: 5.7.0" in dsn[0] and "Subject: Grüße banned8".encode() in dsn[0]
    assert b"see zip" not in dsn[0]
    assert mime_tools_structure(dsn[0], tmp_path) == [
        "global-delivery-status", "text/plain 7bit", "message/global-delivery-status 7bit",
        "message/global-headers 8bit"]


def test_a_utf8_recipient_with_dsn_parameters_is_delivered(stack: Stack):
    """Postfix passes a UTF-8 recipient's ORCPT as rfc822;bob@ex+C3+A4mple.test: a
    parameter check that wants ASCII after xtext refused it (501) and Postfix bounced
    the mail, so the check refuses control characters only."""
    stack.postfix.send("alice@example.test", "bob@exämple.test", _msg("utf8rcpt"),
                       mail_options=["SMTPUTF8"], rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
    assert "Passed CLEAN" in _line(stack, "utf8rcpt"), stack.postfix.log_tail(10)
    deadline = time.monotonic() + 30
    got: list[Path] = []
    while time.monotonic() < deadline and not got:
        got = [p for p in stack.postfix.maildir_messages("bob")
               if "exämple.test" in str(p) and b"<utf8rcpt@" in p.read_bytes()]
        time.sleep(0.2)
    assert got, stack.postfix.log_tail(10)


def _wait_for(stack: Stack, user: str, marker: bytes, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p.read_bytes() for p in stack.postfix.maildir_messages(user)
                 if marker in p.read_bytes()]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"nothing for {user}\n" + stack.postfix.log_tail(20))


def test_recipient_and_admin_notices_arrive_well_formed(stack: Stack):
    """The notices of a blocked message, through the real Postfix: from <>, MIME with
    Date, Message-ID, a valid From and Auto-Submitted: auto-generated (RFC 3834)."""
    data = _banned("notice1").replace(b"Subject: policy notice1",
                                      "Subject: Rechnung für notice1".encode())
    stack.postfix.send("alice@exämple.test", "warned@example.test", data,
                       mail_options=["SMTPUTF8"])
    assert "{DiscardedInbound,Quarantined}" in _line(stack, "notice1")
    for user in ("warned", "postmaster"):
        raw = _wait_for(stack, user, b"notice1" if user == "warned" else b"BANNED from")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["Return-Path"] == "<>" and msg["Auto-Submitted"] == "auto-generated"
        assert msg["MIME-Version"] == "1.0" and msg["Date"] and msg["Message-ID"]
        assert msg["From"].addresses[0].addr_spec.startswith("postmaster@")
        body = msg.get_content()
        assert "alice@exämple.test" in body and "Rechnung für notice1" in body, body
    assert not [m for m in _delivered_to(stack, "warned", "notice1") if b"see zip" in m]


def test_spam_with_reject_destiny_is_refused_to_postfix(stack: Stack):
    stack.postfix.send("promo@spam.example", "rejecter@example.test",
                       _msg("spam1", sender="promo@spam.example"))
    line = _line(stack, "spam1")
    assert "Blocked SPAM {RejectedInbound,Quarantined}" in line
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "554 5.7.0 Reject" not in stack.postfix.log_text():
        time.sleep(0.2)
    log = stack.postfix.log_text()
    assert "554 5.7.0 Reject" in log and "status=bounced" in log


def test_mixed_recipients_are_split(stack: Stack):
    rcpts = ["dave@example.test", "lover@example.test", "tagged@example.test",
             "carol@example.test"]
    stack.postfix.send("promo@spam.example", rcpts, _msg("mixed1", sender="promo@spam.example"))
    passed, line = summary_lines(stack, "mixed1", 2)  # amavis's Passed, then Blocked line
    assert "Passed SPAM {" in passed and "Blocked SPAM {" in line
    took = re.search(r"> -> ((?:<[^>]+>,?)+), .*, queued_as: ", passed)
    assert took and sorted(took[1].split(",")) == [
        "<carol@example.test>", "<lover@example.test>", "<tagged@example.test>"], passed
    assert "> -> <dave@example.test>, " in line and "queued_as" not in line, line
    for both in (passed, line):
        assert "Quarantined" in both and "DiscardedInbound" in both and "RelayedTagged" in both
    wait_ids(stack, {"<mixed1@example.org>"}, 30, copies=3)  # lover, tagged, carol
    time.sleep(1)
    assert _delivered_to(stack, "dave", "mixed1") == []  # discarded (quarantined)
    lover = _delivered_to(stack, "lover", "mixed1")
    tagged = _delivered_to(stack, "tagged", "mixed1")
    carol = _delivered_to(stack, "carol", "mixed1")
    assert len(lover) == len(tagged) == len(carol) == 1
    quarantine_id = f"X-Quarantine-ID: <{_mail_id(line)}>".encode()
    for raw in lover + tagged:
        head, _ = split_delivered(raw)
        assert b"X-Spam-Flag: YES" in head and b"Subject: ***SPAM*** policy mixed1" in head
        assert b"SENDER_BLOCKLISTED=100" in head
        assert quarantine_id in head  # passed copies point at the held one, as amavis's
    head, _ = split_delivered(carol[0])  # carol has no block list: clean, no tags
    assert b"X-Spam-Flag" not in head and b"Subject: policy mixed1" in head
    assert quarantine_id in head


def test_release_round_trip(stack: Stack):
    stack.postfix.send("promo@spam.example", "dave@example.test",
                       _msg("release1", sender="promo@spam.example"))
    mail_id = _mail_id(_line(stack, "release1"))
    assert _delivered_to(stack, "dave", "release1") == []
    run = subprocess.run([sys.executable, "-m", "scanner", "quarantine", "release", mail_id,
                          "--config", str(stack.filter.config_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    wait_ids(stack, {"<release1@example.org>"}, 30)
    got = _delivered_to(stack, "dave", "release1")
    assert len(got) == 1 and b"X-Quarantine-Released:" in got[0]
    again = subprocess.run([sys.executable, "-m", "scanner", "quarantine", "release", mail_id,
                            "--config", str(stack.filter.config_path)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "released" in (again.stderr + again.stdout)
    time.sleep(1)
    assert len(_delivered_to(stack, "dave", "release1")) == 1


def test_quarantine_digest_reaches_the_recipients_maildir(stack: Stack):
    """``scanner quarantine digest`` (cron) lists dave's held spam in a message that
    Postfix delivers to dave through the reinjection smtpd, past the filter."""
    stack.postfix.send("promo@spam.example", "dave@example.test",
                       _msg("digest1", sender="promo@spam.example"))
    mail_id = _mail_id(_line(stack, "digest1"))
    run = subprocess.run([sys.executable, "-m", "scanner", "quarantine", "digest",
                          "--rcpt", "dave@example.test",
                          "--config", str(stack.filter.config_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("<dave@example.test>: ") and "queued as" in run.stdout
    deadline = time.monotonic() + 30
    while True:
        digests = [raw for raw in (p.read_bytes() for p in stack.postfix.maildir_messages("dave"))
                   if b"held for you in quarantine" in raw]
        if digests:
            break
        assert time.monotonic() < deadline, stack.postfix.log_tail()
        time.sleep(0.2)
    msg = email.message_from_bytes(digests[0], policy=email.policy.default)
    assert msg["Return-Path"] == "<>" and msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()  # type: ignore[attr-defined]
    assert f"Id:      {mail_id}" in body and "Subject: policy digest1" in body


def test_broken_quarantine_defers_until_it_works(stack: Stack):
    qdir = stack.base / "filter" / "quarantine"
    saved = stack.base / "filter" / "quarantine.saved"
    shutil.move(qdir, saved)
    qdir.write_text("the disk is full")
    try:
        stack.postfix.send("alice@example.test", "bob@example.test", _banned("qfail1"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "quarantine failed" not in stack.postfix.log_text():
            time.sleep(0.2)
        assert "451 4.5.0 Error in processing" in stack.postfix.log_text()
        assert stack.postfix.queue(), "the message must wait in Postfix's queue"
    finally:
        qdir.unlink()
        shutil.move(saved, qdir)
    stack.postfix.flush()
    line = _line(stack, "qfail1", timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "Quarantined" not in line:
        stack.postfix.flush()
        time.sleep(1)
        line = _line(stack, "qfail1")
    assert "Blocked BANNED" in line and "Quarantined" in line

"""The DSNs and notices scanner writes, read back by Python's email package and by an
independent reader (Perl's MIME-tools, as amavis uses it) against RFC 3461/3464/6522/6533
and what Postfix's own bounces look like (message/global-* for SMTPUTF8 mail, 8bit
declared, Arrival-Date)."""

from __future__ import annotations

import asyncio
import email
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32, default
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from scanner.actions.notify import build_notice, send_notice
from scanner.config.policy import PolicyConfig
from scanner.dsn import build_failure_dsn
from scanner.pipeline.parse import parse_headers
from scanner.reinject.deliver import NextHop
from scanner.reinject.pool import ConnectionPool
from scanner.smtp.params import ParamError, check_mail_params, check_rcpt_params
from scanner.task import Destiny, Envelope, Recipient, Task, Verdict
from tests.helpers import mime_tools_structure

RAW = (b"From: alice@example.org\r\nTo: bob@example.test\r\nSubject: hello\r\n"
       b"Message-ID: <d1@example.org>\r\n\r\nBODYMARK\r\n")
UTF8_RAW = ("From: Jörg <jörg@exämple.org>\r\nTo: bøb@example.test\r\nSubject: Grüße\r\n"
            "Message-ID: <d2@example.org>\r\n\r\nBODYMARK\r\n").encode()


def _task(raw: bytes = RAW, sender: str = "alice@example.org",
          rcpts: tuple[Recipient, ...] = (Recipient("bob@example.test"),),
          mail_params: tuple = (), smtputf8: bool = False) -> Task:
    return Task(mail_id="abcdefghijkl", log_id="00001-01", raw=raw,
                envelope=Envelope(sender, rcpts, mail_params=mail_params, smtputf8=smtputf8))


def _blocks(data: bytes, index: int = 1) -> list[Message]:
    """The field groups of the report's part ``index`` (per-message first), cut out of
    the bytes by its boundary: the email package reads message/global-delivery-status
    as if it were one message/rfc822."""
    boundary = email.message_from_bytes(data, policy=compat32).get_boundary().encode()
    part = data.split(b"--" + boundary)[index + 1]
    body = part.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
    return [BytesHeaderParser(policy=compat32).parsebytes(b + b"\n")
            for b in body.strip(b"\n").split(b"\n\n")]


def test_an_ascii_dsn_reads_as_rfc_3464_in_both_readers(tmp_path: Path) -> None:
    task = _task(rcpts=(Recipient("bob@example.test",
                                  (("ORCPT", "rfc822;Bob+2Bx@Example.TEST"),)),),
                 mail_params=(("ENVID", "Q+2B1"),))
    data = build_failure_dsn(task, [(task.envelope.recipients[0], "550 5.1.1 no such user")],
                             "mx.example.test")
    assert data.isascii() and b"BODYMARK" not in data
    msg = email.message_from_bytes(data, policy=default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in msg.iter_parts()] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    per_msg, per_rcpt = _blocks(data)
    assert per_msg["Reporting-MTA"] == "dns; mx.example.test"
    assert per_msg["Original-Envelope-Id"] == "Q+1"
    assert parsedate_to_datetime(per_msg["Arrival-Date"]).timestamp() == pytest.approx(
        task.arrived, abs=1)
    assert per_rcpt["Original-Recipient"] == "rfc822; Bob+x@Example.TEST"
    assert per_rcpt["Final-Recipient"] == "rfc822; bob@example.test"
    assert (per_rcpt["Action"], per_rcpt["Status"]) == ("failed", "5.1.1")
    assert mime_tools_structure(data, tmp_path) == [
        "delivery-status", "text/plain 7bit", "message/delivery-status 7bit",
        "text/rfc822-headers 7bit"]


def test_a_dsn_for_smtputf8_mail_is_rfc_6533_global(tmp_path: Path) -> None:
    """As Postfix's bounce of SMTPUTF8 mail: message/global-delivery-status with utf-8
    address types, message/global-headers, every 8-bit part declared 8bit."""
    rcpt = Recipient("bøb@example.test", (("ORCPT", "utf-8;b\\x{F8}b@example.test"),))
    task = _task(UTF8_RAW, "jörg@exämple.org", (rcpt,), smtputf8=True)
    data = build_failure_dsn(task, [(rcpt, "554 5.7.0 Message content rejected")],
                             "mx.example.test")
    msg = email.message_from_bytes(data, policy=default)
    assert msg.get_param("report-type") == "global-delivery-status"
    assert msg["Content-Transfer-Encoding"] == "8bit"
    parts = list(msg.iter_parts())
    assert [(p.get_content_type(), p["Content-Transfer-Encoding"]) for p in parts] == [
        ("text/plain", "8bit"), ("message/global-delivery-status", "8bit"),
        ("message/global-headers", "8bit")]
    assert parts[0].get_content_charset() == "utf-8"
    _, per_rcpt = _blocks(data)
    raw_fields = {k: v.encode("ascii", "surrogateescape").decode()
                  for k, v in per_rcpt.raw_items()}
    assert raw_fields["Final-Recipient"] == "utf-8; bøb@example.test"
    assert raw_fields["Original-Recipient"] == "utf-8; bøb@example.test"
    assert "Subject: Grüße".encode() in data
    assert mime_tools_structure(data, tmp_path) == [
        "global-delivery-status", "text/plain 8bit", "message/global-delivery-status 8bit",
        "message/global-headers 8bit"]


@pytest.mark.parametrize("reply,status", [
    ("550 5.1.1 <x@example.test>: no such user", "5.1.1"),
    ("550 no such user here (server 5.6.7.8)", "5.0.0"),     # an IP address is no code
    ("550 mailbox full, was 4.2.2 yesterday", "5.0.0"),
    ("554 4.7.1 rejected", "5.0.0"),                          # class differs from the reply
    ("552-5.3.4 too big", "5.3.4"),
])
def test_status_is_the_replys_own_enhanced_code_of_the_same_class(reply: str,
                                                                   status: str) -> None:
    task = _task()
    data = build_failure_dsn(task, [(task.envelope.recipients[0], reply)], "mx.example.test")
    _, per_rcpt = _blocks(data)
    assert per_rcpt["Status"] == status


def test_a_long_reply_is_folded_within_the_line_limits() -> None:
    """A multi-line next-hop reply is joined into one: its Diagnostic-Code must still
    respect RFC 5322's 998 octets (amavis wraps at 78), and unfold to the same text."""
    reply = "550 5.7.1 " + " ".join(f"word{i:04d}" for i in range(400))
    task = _task()
    data = build_failure_dsn(task, [(task.envelope.recipients[0], reply)], "mx.example.test")
    assert max(len(line) for line in data.split(b"\r\n")) <= 78
    msg = email.message_from_bytes(data, policy=default)
    _, per_rcpt = _blocks(data)
    assert " ".join(per_rcpt["Diagnostic-Code"].split()) == f"smtp; {reply}"
    assert " ".join(list(msg.iter_parts())[0].get_content().split()).endswith(reply)


@pytest.mark.parametrize("params,check", [
    ([("ENVID", "abc+0D+0AAction:+20delivered")], check_mail_params),
    ([("ENVID", "a+7Fb")], check_mail_params),
    ([("ORCPT", "rfc822;bob+0A+0DStatus:+202.0.0@example.test")], check_rcpt_params),
    ([("ORCPT", "rfc822;b+C2+85b@example.test")], check_rcpt_params),  # NEL, a C1 control
    ([("ORCPT", "utf-8;b+00b@example.test")], check_rcpt_params),
])
def test_envid_and_orcpt_must_decode_without_control_characters(params: list,
                                                                 check) -> None:
    """RFC 3461 4.2/4.4: printable text once decoded from xtext. They are copied into
    the DSN, where a decoded CR LF would write fields of the client's choosing."""
    with pytest.raises(ParamError) as caught:
        if check is check_mail_params:
            check(params, 10**6, True)
        else:
            check(params)
    assert caught.value.reply.startswith("501 5.5.4")


def test_valid_envid_and_orcpt_still_pass() -> None:
    check_mail_params([("ENVID", "Q+2B1")], 10**6, True)
    check_rcpt_params([("ORCPT", "rfc822;Bob+2Bx@Example.TEST")])
    check_rcpt_params([("ORCPT", "utf-8;b\\x{F8}b@example.test")])
    check_rcpt_params([("ORCPT", "utf-8;bøb@example.test")])  # utf-8-addr-unitext
    # Postfix's smtp client writes a UTF-8 address so (refusing it bounced such mail)
    check_rcpt_params([("ORCPT", "rfc822;bob@ex+C3+A4mple.test")])
    check_mail_params([("ENVID", "caf+C3+A9")], 10**6, True)


def test_non_ascii_envid_and_orcpt_in_the_report() -> None:
    """A UTF-8 ORCPT is upconverted to a utf-8 address in a global report and stays
    xtext in an ASCII one; a non-ASCII ENVID stays xtext (RFC 3461 wants ASCII)."""
    rcpt = Recipient("bob@exämple.test", (("ORCPT", "rfc822;bob@ex+C3+A4mple.test"),))
    task = _task(rcpts=(rcpt,), mail_params=(("ENVID", "caf+C3+A9"),), smtputf8=True)
    data = build_failure_dsn(task, [(rcpt, "550 5.1.1 no")], "mx.example.test")
    per_msg, per_rcpt = _blocks(data)
    assert per_msg["Original-Envelope-Id"] == "caf+C3+A9"
    assert per_rcpt.raw_items().__next__() == (
        "Original-Recipient", "utf-8; bob@ex\udcc3\udca4mple.test")
    ascii_rcpt = Recipient("bob@example.test", (("ORCPT", "rfc822;b+C3+B8b@example.test"),))
    task = _task(rcpts=(ascii_rcpt,))
    data = build_failure_dsn(task, [(ascii_rcpt, "550 5.1.1 no")], "mx.example.test")
    assert data.isascii() and b"Original-Recipient: rfc822; b+C3+B8b@example.test" in data


def test_the_admin_notice_is_mime_with_encoded_headers_and_short_lines() -> None:
    """It had no MIME-Version, raw UTF-8 in its Subject (a non-ASCII sender) without
    SMTPUTF8, and every recipient on one line (past 998 octets for a big list)."""
    rcpts = tuple(Recipient(f"user{i:03d}@example.test") for i in range(200))
    task = _task(UTF8_RAW, "jörg@exämple.org", rcpts)
    task.message = parse_headers(UTF8_RAW)
    data = build_notice(task, "admin@example.test", "BANNED", "mx.example.test", None)
    head, _, _ = data.partition(b"\r\n\r\n")
    assert head.isascii() and max(len(line) for line in data.split(b"\r\n")) <= 998
    msg = email.message_from_bytes(data, policy=default)
    assert msg["MIME-Version"] == "1.0" and msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"] == "BANNED from <jörg@exämple.org>"
    body = msg.get_content()
    assert "<jörg@exämple.org>" in body and "            <user199@example.test>" in body


def test_notices_with_8bit_content_declare_8bitmime(sink) -> None:
    """An 8-bit notice sent without BODY=8BITMIME breaks RFC 6152 (a strict next hop,
    or one that must downgrade, cannot know it is 8-bit)."""
    policy = PolicyConfig(notify_admin={"banned": "admin@example.test"})
    task = _task(UTF8_RAW, "jörg@exämple.org")
    task.message = parse_headers(UTF8_RAW)
    task.verdicts["bob@example.test"] = Verdict("BANNED", Destiny.DISCARD, 0.0, policy=policy)
    data = build_notice(task, "admin@example.test", "BANNED", "mx.example.test", None)
    assert not data.isascii()

    async def go() -> None:
        pool = ConnectionPool(NextHop("127.0.0.1", sink.port, False, 2, 5, "t.test", False))
        try:
            await send_notice(pool, "admin@example.test", data, "00001-01", "admin notice")
        finally:
            await pool.close()

    asyncio.run(go())
    [got] = sink.wait_for(1)
    assert ("BODY", "8BITMIME") in [tuple(p) for p in got.mail_params]


def test_a_latin1_header_section_comes_back_declared_8bit(tmp_path: Path) -> None:
    """Raw 8-bit headers that are not UTF-8 (legacy mail, no SMTPUTF8): still
    text/rfc822-headers (message/global-headers is UTF-8 only), declared 8bit, and
    the DSN goes out with BODY=8BITMIME but without SMTPUTF8."""
    from scanner.dsn import mail_params

    raw = RAW.replace(b"Subject: hello", "Subject: Grüße".encode("latin-1"))
    task = _task(raw)
    data = build_failure_dsn(task, [(task.envelope.recipients[0], "550 5.1.1 no")],
                             "mx.example.test")
    assert mail_params(task, data) == (("BODY", "8BITMIME"),)
    assert mime_tools_structure(data, tmp_path) == [
        "delivery-status", "text/plain 7bit", "message/delivery-status 7bit",
        "text/rfc822-headers 8bit"]

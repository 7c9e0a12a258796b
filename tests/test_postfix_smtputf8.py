"""Internationalised envelopes towards a real Postfix next hop that does not offer
SMTPUTF8 (``smtputf8_enable = no``): what amavis's Amavis::Out::SMTP does, not the
UTF-8 envelope sent without the SMTPUTF8 parameter (RFC 6531 3.5)."""

from __future__ import annotations

import smtplib
import socket

import pytest

from scanner.reinject.deliver import Outgoing
from scanner.reinject.smtputf8 import ace_address, fit
from scanner.task import ClientInfo, Recipient
from tests.postfix_stack import Stack, require_postfix

pytestmark = pytest.mark.postfix


@pytest.fixture(scope="module")
def stack():
    require_postfix()
    s = Stack()
    s.postfix.extra_main["smtputf8_enable"] = "no"  # the reinjection smtpd among them
    s.start()
    s.postfix.add_users("bob")
    yield s
    s.remove()


def _send_to_filter(stack: Stack, sender: str, rcpt: str, mid: str) -> tuple[int, bytes]:
    """One SMTPUTF8 transaction straight to the filter, as a Postfix that offers
    SMTPUTF8 would hand it over; the filter's reply to DATA."""
    raw = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: eai\r\n"
           f"Message-ID: <{mid}@example.org>\r\n\r\nhello\r\n").encode()
    with smtplib.SMTP("127.0.0.1", stack.filter_port, timeout=60) as client:
        client.ehlo("mx.postfix.test")
        assert client.mail(sender, ["SMTPUTF8", "BODY=8BITMIME"])[0] == 250
        assert client.rcpt(rcpt)[0] == 250
        return client.data(raw)


def test_utf8_local_part_is_refused_with_5_6_7_not_sent_without_smtputf8(stack: Stack):
    code, reply = _send_to_filter(stack, "δοκιμή@example.org", "bob@example.test", "eai1")
    assert code == 550 and reply.startswith(b"5.6.7 "), reply
    assert b"SMTPUTF8 is required" in reply
    assert not any(b"eai1@example.org" in p.read_bytes()
                   for p in stack.postfix.maildir_messages("bob"))
    assert "δοκιμή" not in stack.postfix.log_text()  # never reached the next hop


def test_idn_domain_with_ascii_local_part_goes_out_in_a_label_form(stack: Stack):
    code, reply = _send_to_filter(stack, "alice@пример.рф", "bob@example.test", "eai2")
    assert code == 250, reply
    paths = stack.postfix.wait_delivered(1, 30, user="bob")
    delivered = [p.read_bytes() for p in paths if b"eai2@example.org" in p.read_bytes()]
    assert len(delivered) == 1
    assert delivered[0].startswith(b"Return-Path: <alice@xn--e1afmkfd.xn--p1ai>\n")
    assert "from=<alice@xn--e1afmkfd.xn--p1ai>" in stack.postfix.log_text()


def test_summary_line_of_a_sender_in_latin1_is_logged_with_the_byte_escaped(stack: Stack):
    """MAIL FROM with a byte that is not UTF-8: the filter takes it (as before) and its
    summary line must reach the log (the UTF-8 log file refused it: line lost)."""
    with socket.create_connection(("127.0.0.1", stack.filter_port), timeout=60) as sock:
        reader = sock.makefile("rb")

        def command(line: bytes) -> bytes:
            sock.sendall(line + b"\r\n")
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            return reply

        assert reader.readline().startswith(b"220")
        assert command(b"EHLO mx.postfix.test").startswith(b"250")
        assert command(b"MAIL FROM:<j\xfcrgen@example.org>").startswith(b"250")
        assert command(b"RCPT TO:<bob@example.test>").startswith(b"250")
        assert command(b"DATA").startswith(b"354")
        command(b"From: a@example.org\r\nMessage-ID: <latin1@example.org>\r\n\r\nhi\r\n.")
        command(b"QUIT")
    lines = [ln for ln in stack.filter.summary_lines() if "<latin1@example.org>" in ln]
    assert len(lines) == 1 and "<j\\xfcrgen@example.org> -> <bob@example.test>" in lines[0]


def _out(sender: str, *rcpts: str, utf8: bool = True) -> Outgoing:
    return Outgoing(sender, [Recipient(r) for r in rcpts],
                    (("SMTPUTF8", None),) if utf8 else (), b"", ClientInfo())


def test_fit_refuses_only_the_recipients_that_need_smtputf8():
    out, refused = fit(_out("a@example.org", "b@пример.рф", "δ@example.test", "c@x.test"),
                       False, "smtp:[127.0.0.1]:10025")
    assert [r.address for r in out.recipients] == ["b@xn--e1afmkfd.xn--p1ai",
                                                   "δ@example.test", "c@x.test"]
    assert list(refused) == [1] and refused[1].startswith("553 5.6.7 from MTA(")
    # the A-label recipient keeps the address it was given in an ORCPT (RFC 6533
    # utf-8-addr-xtext), as amavis does; an ORCPT it came with stays
    assert out.recipients[0].params == (
        ("ORCPT", "utf-8;b@\\x{43F}\\x{440}\\x{438}\\x{43C}\\x{435}\\x{440}."
                  "\\x{440}\\x{444}"),)
    given = Outgoing("a@example.org", [Recipient("b@пример.рф", (("ORCPT", "rfc822;x"),))],
                     (), b"", ClientInfo())
    assert fit(given, False, "x")[0].recipients[0].params == (("ORCPT", "rfc822;x"),)


def test_fit_leaves_everything_to_a_next_hop_offering_smtputf8():
    out = _out("δ@пример.рф", "b@пример.рф")
    assert fit(out, True, "x") == (out, {})
    # without SMTPUTF8 asked for, only the A-label form: nothing to refuse
    fitted, refused = fit(_out("a@пример.рф", "δ@example.test", utf8=False), True, "x")
    assert fitted.sender == "a@xn--e1afmkfd.xn--p1ai" and refused == {}
    assert ace_address("δ@пример.рф") == "δ@пример.рф"  # a UTF-8 local part stays

"""8-bit content to a next hop without 8BITMIME (RFC 6152 section 3), and a next hop
that offers no extension at all, against real Postfix smtpds configured with
``smtpd_discard_ehlo_keywords``; plus the 7bit conversion itself (:mod:`mime7bit`)."""

from __future__ import annotations

import asyncio
import email
import time
from email.message import Message
from email.policy import compat32

import pytest

from scanner.reinject.deliver import NextHop, Outgoing, deliver
from scanner.reinject.mime7bit import to_7bit
from scanner.reinject.pool import ConnectionPool
from scanner.task import ClientInfo, Recipient
from scanner.testing.postfix import PostfixInstance
from tests.postfix_stack import plain_postfix

TEXT = "Grüße aus Köln – ça va?\r\n" * 3 + "x" * 90 + "é\r\n"
BLOB = bytes(range(0x80, 0x100)) + b"\r\n\x7f tail"
MIME_8BIT = (b"Subject: mime8\r\nMIME-Version: 1.0\r\n"
             b'Content-Type: multipart/mixed; boundary="=b="\r\n'
             b"Content-Transfer-Encoding: 8bit\r\n\r\npreamble\r\n--=b=\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
             b"\r\n" + TEXT.encode() + b"--=b=\r\nContent-Type: application/octet-stream\r\n"
             b"\r\n" + BLOB + b"\r\n--=b=--\r\n")
PLAIN_8BIT = "Subject: plain8\r\n\r\nGrüße, not MIME\r\n".encode()
EIGHT = (("BODY", "8BITMIME"),)
NO_EXTENSIONS = "pipelining, size, 8bitmime, dsn, xforward, smtputf8, chunking, " \
                "enhancedstatuscodes"


def _out(data: bytes, params: tuple = EIGHT, rcpts: tuple[str, ...] = ("bob@example.test",),
         ) -> Outgoing:
    return Outgoing("a@example.org",
                    [Recipient(r, (("NOTIFY", "SUCCESS"),)) for r in rcpts], params, data,
                    ClientInfo(addr="192.0.2.1", name="client.example"))


def _send(postfix: PostfixInstance, outs: list[Outgoing], all_or_nothing: bool = True,
          ) -> list[list[str]]:
    async def main() -> list[list[str]]:
        hop = NextHop("127.0.0.1", postfix.smtpd_port, False, 5, 30, "scanner.test", True)
        pool = ConnectionPool(hop)
        try:
            return [(await deliver(pool, out, all_or_nothing=all_or_nothing)).replies
                    for out in outs]
        finally:
            await pool.close()
    return asyncio.run(main())


def _delivered(postfix: PostfixInstance, n: int, user: str = "bob") -> dict[str, bytes]:
    """The delivered messages by Subject, as stored (LF lines)."""
    paths = postfix.wait_delivered(n, 30, user=user)
    found = {}
    for path in paths:
        raw = path.read_bytes()
        found[str(email.message_from_bytes(raw, policy=compat32)["Subject"])] = raw
    return found


def _assert_same_parts(raw: bytes) -> None:
    """``raw`` is 7-bit and its parts decode to the original ones."""
    assert raw.isascii(), raw
    msg = email.message_from_bytes(raw, policy=compat32)
    text, blob = [p for p in msg.walk() if not p.is_multipart()]
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert text.get_payload(decode=True) == TEXT.replace("\r\n", "\n").encode().rstrip(b"\n")
    assert blob["Content-Transfer-Encoding"] == "base64"
    assert blob.get_payload(decode=True) == BLOB
    assert msg["Content-Transfer-Encoding"] == "7bit"


def _wait_log(postfix: PostfixInstance, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while text not in (log := postfix.log_text()):
        assert time.monotonic() < deadline, postfix.log_tail(20)
        time.sleep(0.1)
    return log


@pytest.mark.postfix
def test_a_next_hop_without_8bitmime_gets_converted_or_unchanged_content():
    """smtpd_discard_ehlo_keywords = 8bitmime. A MIME message sent with BODY=8BITMIME:
    delivered with its 8-bit parts quoted-printable/base64 (before: sent unconverted,
    and Postfix stored 8-bit octets it had been told nothing about). Without
    BODY=8BITMIME: sent as it is, as Postfix's smtp client does. Not MIME but
    BODY=8BITMIME: cannot be converted safely, so sent as it is too (Postfix's smtp
    client does the same; amavis would refuse it 550 5.6.3), and Postfix takes it."""
    postfix = plain_postfix(smtpd_discard_ehlo_keywords="silent-discard, 8bitmime")
    try:
        replies = _send(postfix, [_out(PLAIN_8BIT), _out(MIME_8BIT),
                                  _out(PLAIN_8BIT, params=())])
        assert all(r[0].startswith("250 2.0.0 from MTA(smtp:") for r in replies), replies
        found = _delivered(postfix, 3)
        assert sorted(found) == ["mime8", "plain8"]
        _assert_same_parts(found["mime8"])
        assert found["plain8"].split(b"\n\n", 1)[1] == "Grüße, not MIME\n".encode()
    finally:
        postfix.remove()


@pytest.mark.postfix
def test_a_next_hop_that_offers_no_extension_gets_plain_commands():
    """Every extension discarded and reject_unauth_pipelining: MAIL and RCPT without
    parameters (a parameter of an extension not offered is refused with 555), one
    command at a time (pipelining would be refused), the content converted to 7bit."""
    postfix = plain_postfix(smtpd_discard_ehlo_keywords=NO_EXTENSIONS,
                            smtpd_data_restrictions="reject_unauth_pipelining")
    try:
        out = _out(MIME_8BIT, EIGHT + (("RET", "HDRS"), ("ENVID", "E1")),
                   ("bob@example.test", "carol@example.test"))
        replies = _send(postfix, [out, out], all_or_nothing=False)
        assert all(r.startswith("250 2.0.0 from MTA(smtp:") for m in replies for r in m), replies
        for user in ("bob", "carol"):
            for raw in _delivered(postfix, 2, user).values():
                _assert_same_parts(raw)
        log = _wait_log(postfix, "commands=")
        assert "improper command pipelining" not in log
    finally:
        postfix.remove()


@pytest.mark.postfix
def test_a_message_over_postfixs_size_limit_is_refused_before_mail():
    """message_size_limit = 2000, advertised as SIZE 2000: our 552 5.3.4 before MAIL
    (Postfix's smtpd counts no MAIL command), not the content sent in a BDAT batch."""
    postfix = plain_postfix(message_size_limit="2000")
    try:
        big = b"Subject: big\r\n\r\n" + b"0123456789abcdef\r\n" * 150
        replies = _send(postfix, [_out(big, params=())])
        assert replies[0][0].startswith("552 5.3.4 from MTA(smtp:"), replies
        assert "exceeds size limit 2000 of the next hop" in replies[0][0]
        log = _wait_log(postfix, "commands=")
        disconnect = next(line for line in log.splitlines() if "commands=" in line)
        assert " mail=" not in disconnect, disconnect
    finally:
        postfix.remove()


def _part(message: bytes, n: int) -> Message:
    return [p for p in email.message_from_bytes(message, policy=compat32).walk()][n]


def test_conversion_keeps_structure_and_relabels_what_it_encoded():
    converted = to_7bit(MIME_8BIT)
    assert converted is not None and converted.isascii()
    assert converted.startswith(b"Subject: mime8\r\nMIME-Version: 1.0\r\n")
    assert b"\r\n\r\npreamble\r\n--=b=\r\n" in converted and converted.endswith(b"--=b=--\r\n")
    assert _part(converted, 2).get_payload(decode=True) == BLOB


def test_a_nested_message_is_converted_inside():
    inner = b"Subject: in\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n\xe9t\xe9\r\n"
    outer = (b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n"
             b"Content-Transfer-Encoding: 8bit\r\n\r\n" + inner)
    converted = to_7bit(outer)
    assert converted == (b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n"
                         b"Content-Transfer-Encoding: 7bit\r\n\r\nSubject: in\r\n"
                         b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
                         b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=E9t=E9\r\n")


@pytest.mark.parametrize("message", [
    PLAIN_8BIT,  # not MIME
    b"MIME-Version: 1.0\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nbody\r\n",  # 8-bit header
    b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n\xff\r\n",
    b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: binary\r\n\r\n\xff\r\n",
    b"MIME-Version: 1.0\r\nContent-Type: message/global\r\n\r\nSubject: \xff\r\n\r\nx\r\n",
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\n\r\n\xff\r\n",  # no closing delimiter
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\n\r\nx\r\n--b--\r\n\xff epilogue\r\n",
    b'MIME-Version: 1.0\r\nContent-Type: multipart/signed; boundary="b"\r\n\r\n'
    b"--b\r\n\r\n\xff signed\r\n--b\r\nContent-Type: application/pgp-signature\r\n\r\n"
    b"sig\r\n--b--\r\n",
], ids=["not-mime", "8bit-header", "base64", "binary", "message-global", "unclosed",
        "epilogue", "signed"])
def test_what_cannot_be_converted_safely_is_not(message: bytes):
    assert to_7bit(message) is None


def test_seven_bit_content_is_left_alone():
    message = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: 8bit\r\n\r\nascii\r\n"
    assert to_7bit(message) == message

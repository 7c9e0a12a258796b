"""XFORWARD attribute parsing: what Postfix sends is accepted, garbage gets 501."""

from __future__ import annotations

import pytest

from scanner.smtp import xforward, xtext
from scanner.smtp.params import ParamError


def test_what_postfix_sends_for_smtp_and_local_mail() -> None:
    assert xforward.parse("NAME=mx.example.org ADDR=192.0.2.7 PORT=40000") == {
        "NAME": "mx.example.org", "ADDR": "192.0.2.7", "PORT": "40000"}
    assert xforward.parse("PROTO=ESMTP HELO=[127.0.0.1] IDENT=CF44920C584 SOURCE=LOCAL") == {
        "PROTO": "ESMTP", "HELO": "[127.0.0.1]", "IDENT": "CF44920C584", "SOURCE": "LOCAL"}
    assert xforward.parse("SOURCE=LOCAL") == {"SOURCE": "LOCAL"}  # pickup (sendmail)


def test_a_utf8_helo_name_is_read_as_utf8() -> None:
    """Postfix xtext-escapes the octets of an SMTPUTF8 client's HELO name (UTF-8): the
    name is that UTF-8 (one Latin-1 letter per octet gave 'Ð¿Ð¾Ñ\x87...')."""
    helo = "+D0+BF+D0+BE+D1+87+D1+82+D0+B0.+D0+BF+D1+80+D0+B8+D0+BC+D0+B5+D1+80.+D1+80+D1+84"
    assert xforward.parse(f"HELO={helo}") == {"HELO": "почта.пример.рф"}


def test_unavailable_values_and_ipv6() -> None:
    assert xforward.parse("NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::1") == {
        "NAME": None, "ADDR": "2001:db8::1"}


@pytest.mark.parametrize("proto", ["QMQP", "SMTP", "esmtp", "X" * 64])
def test_any_protocol_name_postfix_would_take(proto: str) -> None:
    # qmqpd's mail carries PROTO=QMQP; a 501 would lose HELO, IDENT and SOURCE too
    assert xforward.parse(f"PROTO={proto} HELO=client.test")["PROTO"] == proto


@pytest.mark.parametrize("arg", [
    "PROTO=" + "X" * 65, "ADDR=not-an-ip", "PORT=70000", "SOURCE=ELSEWHERE", "BOGUS=1",
    "NAME=a+0Db", "", "HELO=" + "h" * 256,
])
def test_garbage_is_refused(arg: str) -> None:
    with pytest.raises(ParamError) as info:
        xforward.parse(arg)
    assert info.value.reply.startswith("501 5.5.4")


def test_xtext_octets_are_read_as_utf8_once():
    """The octets of xtext are UTF-8 read once: UTF-8 that itself spells "Ã¼" stays
    "Ã¼" (the ORCPT/ENVID readers now use this decode, not a helper that read its
    result again as Latin-1 and made it "ü"), and RFC 6533's \\x{HEX} form of a utf-8
    ORCPT goes both ways through the one module."""
    assert xtext.decode("J+C3+83+C2+BCrgen") == "JÃ¼rgen"
    assert xtext.decode("j+C3+BCrgen") == "jürgen"
    encoded = xtext.encode_utf8_addr("jörg+x@пример.рф")
    assert encoded.isascii() and "\\x{F6}" in encoded and "+2B" in encoded
    assert xtext.decode_utf8_addr(xtext.decode(encoded)) == "jörg+x@пример.рф"
    assert xtext.decode_utf8_addr("a\\x{0}b") == "a\\x{0}b"  # no control characters


def test_dotted_quads_taken_as_sent_are_what_ipaddress_writes() -> None:
    """ADDR's fast path takes a dotted quad without parsing it: only where Python's
    ``ipaddress`` would give the same text back; the rest (leading zeros, octets over
    255, too few parts) still goes through it and gets its answer."""
    import ipaddress
    import random

    rng = random.Random(5)
    pieces = ["0", "00", "01", "007", "9", "10", "99", "100", "199", "249", "250", "255",
              "256", "300", "1000", ""]
    quads = [".".join(rng.choice(pieces) for _ in range(rng.choice((3, 4, 4, 4, 5))))
             for _ in range(20000)]
    for quad in quads:
        try:
            expected: str | None = str(ipaddress.ip_address(quad))
        except ValueError:
            expected = None
        try:
            got: str | None = xforward.parse(f"ADDR={quad}")["ADDR"] if quad else None
        except ParamError:
            got = None
        assert got == expected, quad

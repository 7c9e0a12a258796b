"""DKIM canonicalisation (RFC 6376 3.4) of unusual messages: signatures are made by a
small signer written from the RFC (``tests/auth/dkim_hand.py``, not dkimpy), keys
served from memory, and checked with our verifier."""

from __future__ import annotations

import re
from functools import partial

import dns.rdataclass
import dns.rdatatype
import pytest
from dns.rdtypes.ANY.TXT import TXT

from scanner.auth.dkim_keys import parsed_headers
from scanner.auth.dkim_sign import RSA, PrivateKey, SigningKey, sign
from scanner.auth.dkim_verify import DkimResult, verify_all
from scanner.auth.keygen import generate, record_text
from scanner.dns.client import Answer, Status
from tests.auth.conftest import run, run_inline
from tests.auth.dkim_hand import hand_signed as signed_with
from tests.auth.dkim_hand import hand_verifies

PEM, PUBLIC = generate(1024)
RECORD = record_text(PUBLIC)
hand_signed = partial(signed_with, pem=PEM)


async def lookup(name: str, rdtype: str) -> Answer:
    if name != "s1._domainkey.good.test" or rdtype != "TXT":
        return Answer(Status.NXDOMAIN)
    text = RECORD.encode()
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)]
    return Answer(Status.OK, (TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks),))


def verify(raw: bytes) -> list[DkimResult]:
    return run(verify_all(raw, lookup, run_inline))


HEAD = (b"From: Alice <alice@good.test>\r\nTo: bob@example.test\r\nSubject: minutes\r\n"
        b"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\n\r\n")


@pytest.mark.parametrize("canon", ["relaxed/relaxed", "simple/simple", "relaxed/simple"])
def test_hand_signer_agrees_with_our_verifier(canon: str) -> None:
    raw = hand_signed(HEAD + b"Numbers  are up. \r\n\r\n", canon, [b"from", b"subject"])
    assert [r.result for r in verify(raw)] == ["pass"]
    changed = raw.replace(b"Numbers", b"Figures")
    assert [r.result for r in verify(changed)] == ["fail"]


@pytest.mark.parametrize("canon", ["relaxed/relaxed", "simple/simple"])
def test_white_space_before_the_colon(canon: str) -> None:
    """``Subject  : minutes`` is RFC 5322's obsolete syntax, which relaxed header
    canonicalisation removes (RFC 6376 3.4.2) and simple keeps. dkimpy's parser refused
    the message, so its signature was permerror (Mail::DKIM and OpenDKIM pass it)."""
    message = HEAD.replace(b"Subject: minutes", b"Subject  : minutes") + b"Hello.\r\n"
    raw = hand_signed(message, canon, [b"from", b"subject", b"date"])
    [result] = verify(raw)
    assert result.result == "pass", result.reason
    [changed] = verify(raw.replace(b"Subject  : minutes", b"Subject  : minutes!"))
    assert changed.result == "fail"
    unsigned_field = HEAD + b"Hello.\r\n"
    raw = hand_signed(unsigned_field, canon, [b"from", b"date"])
    odd = raw.replace(b"\r\nTo: bob", b"\r\nTo\t: bob")
    assert [r.result for r in verify(odd)] == ["pass"]


def test_signature_field_names_with_white_space_are_found() -> None:
    """The field name proper drops the white space: a field written ``DKIM-Signature :``
    is a signature for dkimpy and for our list of signatures alike."""
    raw = hand_signed(HEAD + b"Hello.\r\n", "relaxed/relaxed", [b"from"])
    odd = raw.replace(b"DKIM-Signature:", b"DKIM-Signature :", 1)
    headers = parsed_headers(odd)
    assert headers is not None
    assert [n.lower() for n, _ in headers][0] == b"dkim-signature"
    assert [r.result for r in verify(odd)] == ["pass"]


@pytest.mark.parametrize("canon", ["relaxed/relaxed", "simple/simple", "relaxed/simple"])
def test_bare_cr_in_the_body_is_data(canon: str) -> None:
    """A CR not followed by LF is no line end and no white space in either body
    canonicalisation: signed that way (as dkimpy, Mail::DKIM and OpenDKIM's default
    simple mode hash it) it verifies; Postfix hands it on unchanged."""
    body = b"line one\rstill line one \r\nline two\r\r\n"
    raw = hand_signed(HEAD + body, canon, [b"from", b"subject"])
    assert [r.result for r in verify(raw)] == ["pass"]
    as_crlf = raw.replace(b"one\rstill", b"one\r\nstill")
    assert [r.result for r in verify(as_crlf)] == ["fail"]


def test_hand_verifier_checks_dkimpy_signatures() -> None:
    """The test's own verifier agrees with dkimpy on a plain message (so it can judge
    the signer below independently)."""
    key = SigningKey("good.test", "s1", PrivateKey(RSA, PEM))
    message = HEAD + b"Numbers  are up. \r\n"
    name, value = sign(message, key)
    raw = f"{name}: {value}\r\n".encode() + message
    assert hand_verifies(raw, PEM)
    assert not hand_verifies(raw.replace(b"Numbers", b"Figures"), PEM)
    assert not hand_verifies(raw.replace(b"Subject: minutes", b"Subject: minutes!"), PEM)


def test_our_signer_signs_white_space_before_the_colon() -> None:
    """Our signer read the header section with dkimpy's parser too: a message of our
    own user with ``Subject  : minutes`` raised MessageFormatError and left unsigned."""
    key = SigningKey("good.test", "s1", PrivateKey(RSA, PEM))
    message = HEAD.replace(b"Subject: minutes", b"Subject  : minutes") + b"Hello.\r\n"
    name, value = sign(message, key)
    assert "subject" in re.search(r"h=([^;]+);", value).group(1)  # type: ignore[union-attr]
    raw = f"{name}: {value}\r\n".encode() + message
    assert hand_verifies(raw, PEM)
    assert [r.result for r in verify(raw)] == ["pass"]
    changed = raw.replace(b"Subject  : minutes", b"Subject  : minutes!")
    assert not hand_verifies(changed, PEM)

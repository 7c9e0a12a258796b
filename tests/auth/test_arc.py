"""ARC (RFC 8617): chains sealed at test time with dkimpy's ``arc_sign``, keys served from
memory through the same ``lookup(name, type)`` our DNS client gives the check, and
tampered chains. Verdicts agree with Mail::DKIM's ARC verifier
(``scripts/auth_differential.py``)."""

from __future__ import annotations

import re
import types
from collections.abc import Callable

import dkim
import dns.rdataclass
import dns.rdatatype
import pytest
from dns.rdtypes.ANY.TXT import TXT

from scanner.auth.arc import ArcResult, verify_arc
from scanner.auth.dkim_keys import tags as parse_tags
from scanner.auth.keygen import generate, record_text
from scanner.dns.client import Answer, Status
from tests.auth.arc_hand import hand_sealed
from tests.auth.conftest import run, run_inline

MESSAGE = (b"From: Alice <alice@good.test>\r\nTo: list@lists.test\r\nSubject: minutes\r\n"
           b"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\nMessage-ID: <m1@good.test>\r\n\r\n"
           b"The minutes are attached.\r\n")


class Keys:
    """One RSA key published for every relay domain; remembers the names asked for."""

    def __init__(self) -> None:
        self.pem, public = generate(1024)
        self.record = record_text(public)
        self.asked: list[str] = []

    async def lookup(self, name: str, rdtype: str) -> Answer:
        self.asked.append(name)
        if not name.startswith("arc._domainkey.") or rdtype != "TXT":
            return Answer(Status.NXDOMAIN)
        text = self.record.encode()
        chunks = [text[i:i + 255] for i in range(0, len(text), 255)]
        return Answer(Status.OK, (TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks),))


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def seal(keys: Keys, message: bytes, relay: str, cv: str = "",
         sign: Callable[..., list[bytes]] = dkim.arc_sign) -> bytes:
    """``message`` with an Authentication-Results of ``relay`` (carrying ``arc=cv`` when
    given) and the ARC set ``relay`` adds on top."""
    server = f"mx.{relay}".encode()
    results = b"; arc=" + cv.encode() if cv else b""
    stamped = (b"Authentication-Results: " + server + b"; spf=pass smtp.mailfrom=good.test"
               + results + b"\r\n" + message)
    return b"".join(sign(stamped, b"arc", relay.encode(), keys.pem, server)) + stamped


def chain(keys: Keys, length: int, sign: Callable[..., list[bytes]] = dkim.arc_sign) -> bytes:
    raw = seal(keys, MESSAGE, "relay1.test")
    for n in range(2, length + 1):
        raw = seal(keys, raw, f"relay{n}.test", "pass", sign)
    return raw


def verify(keys: Keys, raw: bytes) -> ArcResult:
    keys.asked.clear()
    return run(verify_arc(raw, keys.lookup, run_inline))


def fields(raw: bytes) -> tuple[list[bytes], bytes]:
    """The header fields (folded lines kept together) and the body."""
    head, _, body = raw.partition(b"\r\n\r\n")
    return re.split(rb"\r\n(?![ \t])", head), body


def joined(header: list[bytes], body: bytes) -> bytes:
    return b"\r\n".join(header) + b"\r\n\r\n" + body


def arc_sign_beyond_50() -> Callable[..., list[bytes]]:
    """dkimpy's ``arc_sign`` without its limit of 50 instances, to build the chain a
    hostile or broken relay could send (only the number 50 in the signer changes)."""
    method = dkim.ARC.sign
    code = method.__code__.replace(co_consts=tuple(
        1000 if c == 50 and type(c) is int else c for c in method.__code__.co_consts))
    unlimited = type("UnlimitedARC", (dkim.ARC,), {
        "sign": types.FunctionType(code, method.__globals__, "sign", method.__defaults__)})

    def sign(message: bytes, selector: bytes, domain: bytes, privkey: bytes,
             srv_id: bytes) -> list[bytes]:
        return unlimited(message).sign(selector, domain, privkey, srv_id)

    return sign


def test_sealed_chains_pass(keys: Keys) -> None:
    assert verify(keys, MESSAGE) == ArcResult("none")
    for length in (1, 2, 3):
        result = verify(keys, chain(keys, length))
        assert (result.result, result.instances) == ("pass", length), result.reason


def test_latest_ams_folded_before_its_instance_passes(keys: Keys) -> None:
    """Relaxed canonicalisation lets a relay refold ``ARC-Message-Signature: i=1; ...``
    as ``ARC-Message-Signature:<CRLF><TAB>i=1; ...``. dkimpy's chain walk looked the
    field up by the bytes `` i=1;`` and failed with an IndexError; Mail::DKIM passes."""
    raw = chain(keys, 2)
    for folded in (b"ARC-Message-Signature:\r\n\ti=2;", b"ARC-Message-Signature:\ti=2;"):
        refolded = raw.replace(b"ARC-Message-Signature: i=2;", folded)
        assert refolded != raw
        result = verify(keys, refolded)
        assert result.result == "pass", (folded, result.reason)


def test_sets_pass_in_any_header_order(keys: Keys) -> None:
    """The seal signs the sets in instance order (RFC 8617 5.1.1), not in header order:
    with set 1 moved above set 2 dkimpy hashed them the wrong way round and failed."""
    header, body = fields(chain(keys, 2))
    names = [f.split(b":", 1)[0] for f in header]
    assert names[:3] == [b"ARC-Seal", b"ARC-Message-Signature", b"ARC-Authentication-Results"]
    assert names[4:7] == names[:3]
    set2, set1 = header[0:3], header[4:7]
    reordered = joined(set1 + set2 + header[3:4] + header[7:], body)
    assert verify(keys, reordered).result == "pass"
    tampered = reordered.replace(b"spf=pass smtp.mailfrom=good.test;\r\n arc=pass",
                                 b"spf=pass smtp.mailfrom=evil.test;\r\n arc=pass")
    assert tampered != reordered
    assert verify(keys, tampered).result == "fail"


def test_more_than_50_sets_fail_before_any_key_lookup(keys: Keys) -> None:
    """RFC 8617 5.2 step 1: more than 50 sets is a failed chain. dkimpy validated all 51
    (pass) after we had looked up the key of every signature in the message."""
    sign = arc_sign_beyond_50()
    fifty = chain(keys, 50, sign)
    assert verify(keys, fifty).result == "pass"
    fifty_one = seal(keys, fifty, "relay51.test", "pass", sign)
    assert b"ARC-Seal: i=51;" in fifty_one
    result = verify(keys, fifty_one)
    assert (result.result, result.instances) == ("fail", 51)
    assert "more than 50" in result.reason
    assert keys.asked == []


def test_broken_structure_fails_without_lookups(keys: Keys) -> None:
    header, body = fields(chain(keys, 3))  # sets 3, 2, 1 from the top, 4 fields each
    cases = {
        "ARC sets are not numbered from 1 without a gap (i=1, 3)": header[:4] + header[8:],
        "ARC set i=2 lacks its ARC-Authentication-Results": header[:6] + header[7:],
        "ARC set i=1 has 2 ARC-Seal fields": header[8:9] + header,
        "ARC-Seal without a valid instance (i=)": [header[0].replace(b"i=3;", b"i=x;")]
        + header[1:],
    }
    for reason, broken in cases.items():
        result = verify(keys, joined(broken, body))
        assert (result.result, result.reason) == ("fail", reason)
        assert keys.asked == []


def test_chain_numbered_from_0_fails(keys: Keys) -> None:
    """dkimpy took a chain whose only set says i=0 for no chain at all (arc=none)."""
    zero = chain(keys, 1).replace(b"i=1;", b"i=0;")
    assert zero.count(b"i=0;") == 3
    result = verify(keys, zero)
    assert (result.result, result.reason) == ("fail", "ARC instance i=0 is outside 1 to 50")


def test_cv_values(keys: Keys) -> None:
    """The latest seal saying cv=fail ends the chain (step 2); the first must say
    cv=none and every later one cv=pass (step 3)."""
    failed = seal(keys, chain(keys, 1), "relay2.test", "fail")
    assert b"cv=fail" in failed
    result = verify(keys, failed)
    assert (result.result, result.reason) == (
        "fail", "the latest ARC-Seal (i=2) says cv=fail")
    wrong = chain(keys, 1).replace(b"cv=none", b"cv=pass")
    result = verify(keys, wrong)
    assert (result.result, result.reason) == ("fail", "ARC-Seal i=1 says cv=pass, not cv=none")


def test_only_the_latest_ams_must_verify(keys: Keys) -> None:
    """A list that tags the Subject breaks the first AMS; its own AMS and every seal
    still verify, so the chain passes (RFC 8617 5.2 steps 4 to 6). A change after the
    latest set fails it."""
    first = seal(keys, MESSAGE, "relay1.test")
    tagged = first.replace(b"Subject: minutes", b"Subject: [list] minutes")
    raw = seal(keys, tagged, "relay2.test", "pass")
    result = verify(keys, raw)
    assert (result.result, result.instances) == ("pass", 2), result.reason
    assert sorted(set(keys.asked)) == ["arc._domainkey.relay1.test",
                                       "arc._domainkey.relay2.test"]
    result = verify(keys, raw.replace(b"Subject: [list] minutes", b"Subject: minutes"))
    assert result.result == "fail"
    assert result.reason.startswith("the latest ARC-Message-Signature (i=2) did not verify")


def test_changed_seal_or_results_fail(keys: Keys) -> None:
    raw = chain(keys, 2)
    for old, new in ((b"smtp.mailfrom=good.test;\r\n arc=pass",
                      b"smtp.mailfrom=good.test;\r\n arc=none"),
                     (b"; mx.relay1.test;", b"; mx.relay9.test;"),
                     (b"d=relay1.test; s=arc;", b"d=relay2.test; s=arc;")):
        assert old in raw, old
        assert verify(keys, raw.replace(old, new, 1)).result == "fail", old


def test_ams_without_c_is_simple(keys: Keys) -> None:
    """RFC 8617 4.1.2 gives the ARC-Message-Signature the DKIM-Signature's semantics,
    whose c= default is simple/simple (RFC 6376 3.5); Mail::DKIM and Exim read it so.
    We read it as relaxed, as dkimpy's ARC verifier does: over a header whose white
    space simple and relaxed see differently, an AMS signed simple without c= failed and
    one signed relaxed without saying so passed. Sets made by a sealer written from the
    RFC (tests/auth/arc_hand.py)."""
    spaced = MESSAGE.replace(b"Subject: minutes", b"Subject:  minutes \r\n\tof the meeting")
    simple = hand_sealed(spaced, keys.pem, "relay1.test", None)
    ams = simple.split(b"ARC-Message-Signature:")[1].split(b"\r\n")[0]
    assert "c" not in (parse_tags(ams) or {}) and "bh" in (parse_tags(ams) or {})
    result = verify(keys, simple)
    assert (result.result, result.instances) == ("pass", 1), result.reason
    unsaid = hand_sealed(spaced, keys.pem, "relay1.test", None, canon="relaxed/relaxed")
    result = verify(keys, unsaid)
    assert result.result == "fail"
    assert result.reason.startswith("the latest ARC-Message-Signature (i=1) did not verify")
    on_relaxed = hand_sealed(hand_sealed(spaced, keys.pem, "relay1.test", "relaxed/relaxed"),
                             keys.pem, "relay2.test", None, cv="pass")
    result = verify(keys, on_relaxed)
    assert (result.result, result.instances) == ("pass", 2), result.reason


def test_hand_sealer_agrees_with_dkimpy_when_c_is_given(keys: Keys) -> None:
    """The sealer the test above relies on makes sets dkimpy's ARC verifier takes when
    the AMS says its c=, and none it takes after a change."""
    spaced = MESSAGE.replace(b"Subject: minutes", b"Subject:  minutes \r\n\tof the meeting")
    record = keys.record.encode()
    for canon in ("simple/simple", "relaxed/relaxed", "relaxed/simple", "simple/relaxed"):
        raw = hand_sealed(spaced, keys.pem, "relay1.test", canon)
        assert dkim.arc_verify(raw, dnsfunc=lambda *_, **__: record)[0] == dkim.CV_Pass
        assert verify(keys, raw).result == "pass", canon
        changed = raw.replace(b"of the meeting", b"of the  meeting")
        assert verify(keys, changed).result == ("pass" if canon.startswith("relaxed")
                                                else "fail"), canon

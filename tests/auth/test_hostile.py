"""Hostile and malformed input never makes the auth check or the signer raise."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.auth.dkim_sign import SigningKey, load_key
from scanner.checks.auth import Auth
from scanner.checks.dkim import DkimSign
from scanner.task import ClientInfo
from scanner.testing.dns_server import DnsServer
from scanner.testing.tasks import task_from_bytes
from tests.auth.conftest import Keys, dns_table, make_check, run

LINES = st.sampled_from([
    b"From: a@good.test", b"From: <>", b"From: a@[192.0.2.1]", b"From: \xff\xfe@x.test",
    b"From: a@good.test, b@quar.test", b"From: =?utf-8?q?x?= <a@b\xc3\xa9.test>",
    b"DKIM-Signature: v=1; a=rsa-sha256; d=good.test; s=s1; b=AAAA; bh=BBBB; h=from",
    b"DKIM-Signature: garbage", b"DKIM-Signature: v=1; d=\xff; s=\x00",
    b"DKIM-Signature: v=1; a=rsa-sha256; d=good.test; s=s1; bh=; b=; h=; l=-5; x=1",
    b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=arc.test; s=arc; b=AAAA",
    b"ARC-Message-Signature: i=1; a=rsa-sha256; d=arc.test; s=arc; h=from; bh=x; b=y",
    b"ARC-Authentication-Results: i=1; x", b"ARC-Seal: i=99999999999999999999",
    b"Received: from x ([192.0.2.99]) by y", b"Received: from [IPv6:zz::zz] by y",
    b"not a header line", b" continuation", b"Subject: \x00\x01\x02", b"X: " + b"a" * 3000,
    b"\t", b"", b"From a@b.test",
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(head=st.lists(LINES, min_size=1, max_size=8),
       ending=st.sampled_from([b"\r\n", b"\n"]),
       sender=st.sampled_from(["", "<>", "a@good.test", "x@[192.0.2.1]", "bad address"]),
       helo=st.sampled_from(["", "[192.0.2.1]", "mail.good.test", "x" * 300, "a..b"]))
def test_auth_check_never_raises(dns_server: DnsServer, head: list[bytes], ending: bytes,
                                 sender: str, helo: str) -> None:
    check = make_check(Auth, {"dns": dns_table(dns_server, timeout=0.3, budget=0.6),
                              "authserv_id": "mx.test"})
    raw = ending.join(head) + ending + ending + b"body" + ending
    client = ClientInfo(addr="192.0.2.99", helo=helo or None)
    with task_from_bytes(raw, sender=sender, client=client) as task:
        hits = list(run(check.run(task)))
    assert all(h.symbol for h in hits)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(head=st.lists(LINES, min_size=1, max_size=6))
def test_signer_signs_or_skips(dkim_keys: Keys, head: list[bytes]) -> None:
    signer = make_check(DkimSign, {"keys": [{"domain": "good.test", "selector": "s1",
                                             "key_file": str(dkim_keys.files["k1"])}]})
    raw = b"From: a@good.test\r\n" + b"\r\n".join(head) + b"\r\n\r\nbody\r\n"
    with task_from_bytes(raw, sender="a@good.test", policy_bank="ORIGINATING") as task:
        headers = run(signer.sign(task, raw))
    assert len(headers) <= 1
    assert SigningKey("good.test", "s1", load_key(str(dkim_keys.files["k1"])))

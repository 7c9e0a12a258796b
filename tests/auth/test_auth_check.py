"""The auth check end to end on Tasks: symbols, Authentication-Results, trust, budget."""

from __future__ import annotations

import time
from typing import Any

import dkim
import pytest

from scanner.auth.dkim_sign import SigningKey, load_key, sign
from scanner.checks.auth import Auth
from scanner.scores import load_scores
from scanner.task import ClientInfo, Hit
from scanner.testing.dns_server import BlackHole, DnsServer
from scanner.testing.tasks import task_from_bytes
from tests.auth.conftest import Keys, dns_table, make_check, run

GOOD = ClientInfo(addr="192.0.2.1", name="mail.good.test", helo="mail.good.test")
BAD = ClientInfo(addr="192.0.2.99", name=None, helo="spoofer.spf.test")


def mail(author: str, body: str = "Hello there.\r\n", extra: str = "") -> bytes:
    return (f"From: Someone <{author}>\r\nTo: bob@ours.test\r\nSubject: hello\r\n"
            f"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\nMessage-ID: <m1@x.test>\r\n"
            f"{extra}\r\n{body}").encode()


def signed(keys: Keys, raw: bytes, domain: str, selector: str = "s1", key: str = "k1"
           ) -> bytes:
    name, value = sign(raw, SigningKey(domain, selector, load_key(str(keys.files[key]))))
    return f"{name}: {value}\r\n".encode() + raw


def check_for(server: DnsServer | BlackHole, **settings: Any) -> Auth:
    table = {"dns": dns_table(server), "authserv_id": "mx.ours.test", **settings}
    return make_check(Auth, table)


def scan(check: Auth, raw: bytes, sender: str, client: ClientInfo = GOOD,
         bank: str = "") -> tuple[dict[str, Hit], list[tuple[str, str]]]:
    with task_from_bytes(raw, sender=sender, client=client, policy_bank=bank) as task:
        hits = list(run(check.run(task)))
        return {h.symbol: h for h in hits}, task.add_headers


def test_everything_passes(dns_server: DnsServer, dkim_keys: Keys) -> None:
    raw = signed(dkim_keys, mail("alice@good.test"), "good.test")
    hits, headers = scan(check_for(dns_server), raw, "alice@good.test")
    assert set(hits) == {"SPF_PASS", "SPF_HELO_NONE", "DKIM_SIGNED", "DKIM_VALID",
                         "DKIM_VALID_AU", "DMARC_PASS"}
    [(name, value)] = headers
    assert name == "Authentication-Results"
    assert value.startswith("mx.ours.test;\r\n\tspf=pass (good.test: ip4:192.0.2.1/32) "
                            "smtp.mailfrom=alice@good.test;")
    assert "dkim=pass header.d=good.test header.s=s1 header.b=" in value
    assert "dmarc=pass (p=reject dis=none) header.from=good.test" in value
    assert value.endswith("arc=none")


def test_spoofed_sender_hits_dmarc_reject(dns_server: DnsServer) -> None:
    hits, headers = scan(check_for(dns_server), mail("ceo@good.test"), "ceo@good.test", BAD)
    assert {"SPF_HARDFAIL", "DMARC_REJECT", "SPF_HELO_NONE"} <= set(hits)
    assert "dmarc=fail (p=reject dis=reject) header.from=good.test" in headers[0][1]
    scores = load_scores()
    total = sum(scores.get(s).weight for s in hits)
    assert 3.0 < total < 6.31  # strong, but not a reject on its own


@pytest.mark.parametrize("author,symbol", [
    ("x@quar.test", "DMARC_QUARANTINE"),
    ("x@none.test", "DMARC_POLICY_NONE"),
    ("x@pct.test", "DMARC_QUARANTINE"),  # pct=0: reject is downgraded
    ("x@child.sub.test", "DMARC_REJECT"),  # sp=reject at the organizational domain
    ("x@nodmarc.test", "DMARC_NA"),
])
def test_dmarc_policies(dns_server: DnsServer, author: str, symbol: str) -> None:
    hits, _ = scan(check_for(dns_server), mail(author), author, BAD)
    assert symbol in hits
    assert hits[symbol].options == (author.split("@")[1],)


def test_forwarded_mail_passes_dmarc_through_dkim(dns_server: DnsServer, dkim_keys: Keys
                                                   ) -> None:
    raw = signed(dkim_keys, mail("alice@good.test"), "good.test")
    hits, _ = scan(check_for(dns_server), raw, "alice@good.test", BAD)
    assert {"SPF_HARDFAIL", "DKIM_VALID_AU", "DMARC_PASS"} <= set(hits)


def test_strict_alignment(dns_server: DnsServer, dkim_keys: Keys) -> None:
    raw = signed(dkim_keys, mail("news@news.strict.test"), "strict.test")
    hits, _ = scan(check_for(dns_server), raw, "news@news.strict.test", BAD)
    assert {"DKIM_VALID", "DKIM_VALID_AU", "DMARC_REJECT"} <= set(hits)


def test_third_party_signature_and_broken_signature(dns_server: DnsServer, dkim_keys: Keys
                                                    ) -> None:
    raw = signed(dkim_keys, mail("x@nodmarc.test"), "good.test")
    hits, _ = scan(check_for(dns_server), raw, "x@nodmarc.test", BAD)
    assert "DKIM_VALID" in hits and "DKIM_VALID_AU" not in hits
    broken = raw.replace(b"Hello there.", b"Hello world.")
    hits, headers = scan(check_for(dns_server), broken, "x@nodmarc.test", BAD)
    assert "DKIM_INVALID" in hits and "DKIM_VALID" not in hits
    assert "dkim=fail (body hash mismatch" in headers[0][1]


def test_null_sender_uses_helo(dns_server: DnsServer) -> None:
    client = ClientInfo(addr="192.0.2.1", helo="helo.spf.test")
    hits, headers = scan(check_for(dns_server), mail("mailer-daemon@helo.spf.test"), "",
                         client)
    assert "SPF_PASS" in hits and "SPF_HELO_PASS" not in hits
    assert "spf=pass (helo.spf.test: a) smtp.helo=helo.spf.test" in headers[0][1]


def test_bad_from_is_permerror(dns_server: DnsServer) -> None:
    two = mail("a@good.test", extra="From: b@quar.test\r\n")
    hits, _ = scan(check_for(dns_server), two, "a@good.test")
    assert "DMARC_PERMERROR" in hits


def test_a_broken_subdomain_record_does_not_borrow_the_parent_policy(
        dns_server: DnsServer) -> None:
    """typo.good.test publishes "p=rejcet" (no rua): RFC 7489 6.6.3 applies no DMARC,
    it does not fall back to good.test's p=reject."""
    hits, headers = scan(check_for(dns_server), mail("x@typo.good.test"), "x@typo.good.test",
                         BAD)
    assert "DMARC_NA" in hits and "DMARC_REJECT" not in hits
    assert ("dmarc=none (invalid DMARC record at typo.good.test) "
            "header.from=typo.good.test") in headers[0][1]


def test_utf8_from_domain_gets_its_policy(dns_server: DnsServer) -> None:
    """SMTPUTF8 mail with the From domain in raw UTF-8 (RFC 6532) is judged by the policy
    of its A-label form, not given up as "no From domain"."""
    hits, headers = scan(check_for(dns_server), mail("ceo@bücher.test"), "ceo@bücher.test",
                         BAD)
    assert "DMARC_REJECT" in hits and "DMARC_PERMERROR" not in hits
    assert hits["DMARC_REJECT"].options == ("xn--bcher-kva.test",)
    assert "dmarc=fail (p=reject dis=reject) header.from=xn--bcher-kva.test" in headers[0][1]


def test_address_literal_from_is_permerror(dns_server: DnsServer) -> None:
    hits, headers = scan(check_for(dns_server), mail("a@[192.0.2.1]"), "a@good.test")
    assert "DMARC_PERMERROR" in hits
    assert "dmarc=permerror (no From domain)" in headers[0][1]


@pytest.mark.parametrize("author", ["ceo@www..good.test", "ceo@.good.test"])
def test_from_domain_with_an_empty_label_is_permerror(dns_server: DnsServer, author: str
                                                      ) -> None:
    """A From domain that cannot exist in the DNS has no DMARC record to find: that
    made a spoof of a p=reject domain DMARC_NA (no policy) instead of an error."""
    hits, headers = scan(check_for(dns_server), mail(author), "x@spf.test", BAD)
    assert "DMARC_PERMERROR" in hits and "DMARC_NA" not in hits
    assert "dmarc=permerror (no From domain)" in headers[0][1]


def test_failing_signature_of_a_testing_key_counts_as_unsigned(dns_server: DnsServer,
                                                               dkim_keys: Keys) -> None:
    """RFC 6376 3.6.1: mail of a domain testing DKIM (key t=y) is treated like unsigned
    mail when its signature fails: no DKIM_SIGNED or DKIM_INVALID. A-R still says it."""
    raw = signed(dkim_keys, mail("alice@good.test"), "good.test", selector="testing")
    broken = raw.replace(b"Hello there.", b"Hello changed.")
    hits, headers = scan(check_for(dns_server), broken, "alice@good.test")
    assert not {"DKIM_SIGNED", "DKIM_INVALID", "DKIM_VALID"} & set(hits), hits
    assert "dkim=fail (body hash mismatch" in headers[0][1]
    assert "; key in testing mode t=y) header.d=good.test header.s=testing" in headers[0][1]
    hits, headers = scan(check_for(dns_server), raw, "alice@good.test")
    assert {"DKIM_SIGNED", "DKIM_VALID", "DKIM_VALID_AU"} <= set(hits)
    assert "dkim=pass (key in testing mode t=y) header.d=good.test" in headers[0][1]


def test_trusted_and_originating_mail_is_not_verified(dns_server: DnsServer) -> None:
    local = ClientInfo(addr="127.0.0.1", name="localhost", helo="localhost")
    hits, headers = scan(check_for(dns_server), mail("a@good.test"), "a@good.test", local)
    assert set(hits) == {"ALL_TRUSTED"} and headers == []
    hits, headers = scan(check_for(dns_server), mail("a@good.test"), "a@good.test",
                         bank="ORIGINATING")
    assert hits == {} and headers == []


def test_client_from_received_chain(dns_server: DnsServer) -> None:
    chain = ("Received: from mx1.ours.test (mx1.ours.test [10.1.2.3]) by mx2.ours.test "
             "(Postfix) with ESMTP id 1; Mon, 2 Jun 2025 10:00:01 +0000\r\n"
             "Received: from mail.good.test (mail.good.test [192.0.2.1]) by mx1.ours.test "
             "(Postfix) with ESMTP id 2; Mon, 2 Jun 2025 10:00:00 +0000\r\n")
    raw = chain.encode() + mail("a@good.test")
    check = check_for(dns_server, trusted_networks=["127.0.0.0/8", "10.0.0.0/8"])
    hits, _ = scan(check, raw, "a@good.test", ClientInfo())
    assert {"SPF_PASS", "DMARC_PASS"} <= set(hits)
    hits, _ = scan(check_for(dns_server), raw, "a@good.test", ClientInfo())
    assert "SPF_HARDFAIL" in hits  # 10.1.2.3 is not trusted by default: it is the client


def test_dns_timeouts_tempfail_within_budget(black_hole: BlackHole, dkim_keys: Keys) -> None:
    check = check_for(black_hole, dns={"resolvers": [black_hole.resolver], "timeout": 0.3,
                                       "budget": 0.6, "cache_size": 0})
    raw = signed(dkim_keys, mail("a@good.test"), "good.test")
    began = time.monotonic()
    hits, headers = scan(check, raw, "a@good.test", GOOD)
    elapsed = time.monotonic() - began
    assert {"SPF_TEMPFAIL", "SPF_HELO_TEMPFAIL", "DKIM_TEMPFAIL", "DMARC_TEMPFAIL"} <= set(hits)
    assert elapsed < 2.0
    scores = load_scores()
    assert sum(scores.get(s).weight for s in hits) <= 0.1  # DKIM_SIGNED only
    assert not any(scores.get(s).tempfail for s in hits)
    assert "spf=temperror" in headers[0][1] and "dmarc=temperror" in headers[0][1]


def test_no_dns_at_all_is_quick(dns_server: DnsServer) -> None:
    check = check_for(dns_server, dns={"resolvers": ["127.0.0.1:9"], "timeout": 0.5,
                                       "budget": 1.0, "cache_size": 0})
    began = time.monotonic()
    hits, _ = scan(check, mail("a@good.test"), "a@good.test", GOOD)
    assert time.monotonic() - began < 2.0
    assert "SPF_TEMPFAIL" in hits and "DMARC_TEMPFAIL" in hits


def test_switches(dns_server: DnsServer) -> None:
    check = check_for(dns_server, spf=False, dkim=False, arc=False, add_header=False)
    hits, headers = scan(check, mail("a@good.test"), "a@good.test", BAD)
    assert set(hits) == {"DMARC_REJECT"} and headers == []


def test_arc_result_in_symbols_and_header(dns_server: DnsServer, dkim_keys: Keys) -> None:
    """A forwarded message sealed by arc.test (key in NSD): ARC_VALID and arc=pass with
    the number of sets; a broken chain gives ARC_INVALID and arc=fail."""
    base = (b"Authentication-Results: mx.arc.test; spf=pass smtp.mailfrom=good.test\r\n"
            + mail("alice@good.test"))
    sealed = b"".join(dkim.arc_sign(base, b"arc", b"arc.test",
                                    dkim_keys.files["k2"].read_bytes(), b"mx.arc.test")) + base
    hits, headers = scan(check_for(dns_server), sealed, "list@lists.test", BAD)
    assert "ARC_VALID" in hits and "ARC_INVALID" not in hits
    assert headers[0][1].endswith("arc=pass (i=1)")
    broken = sealed.replace(b"Hello there.", b"Hello there!")
    hits, headers = scan(check_for(dns_server), broken, "list@lists.test", BAD)
    assert "ARC_INVALID" in hits
    assert headers[0][1].endswith("arc=fail (i=1)")


def test_mail_through_an_msa_is_not_verified(dns_server: DnsServer) -> None:
    """msa_networks (SpamAssassin's): the user's home connection below our submission
    server is trusted, so the message is ALL_TRUSTED; without it that connection is the
    client SPF checks."""
    chain = (b"Received: from msa.ours.test (msa.ours.test [10.0.0.9]) by mx.ours.test "
             b"(Postfix) with ESMTP id 3EF; Mon, 2 Jun 2025 10:00:01 +0000\r\n"
             b"Received: from laptop.home.test (dsl.isp.test [192.0.2.50]) by msa.ours.test "
             b"(Postfix) with ESMTP id 2CD; Mon, 2 Jun 2025 10:00:00 +0000\r\n")
    raw = chain + mail("alice@good.test")
    nets = {"trusted_networks": ["127.0.0.0/8", "10.0.0.0/8"]}
    hits, _ = scan(check_for(dns_server, msa_networks=["10.0.0.9"], **nets), raw,
                   "alice@good.test", ClientInfo())
    assert set(hits) == {"ALL_TRUSTED"}
    hits, _ = scan(check_for(dns_server, **nets), raw, "alice@good.test", ClientInfo())
    assert "ALL_TRUSTED" not in hits and any(s.startswith("SPF_") for s in hits)

"""DMARC: record parsing, discovery with the organizational-domain fallback, alignment,
policy and pct."""

from __future__ import annotations

import pytest

from scanner.auth.dkim_verify import DkimResult
from scanner.auth.dmarc import (
    Discovery,
    DmarcRecord,
    aligned,
    discover,
    evaluate,
    is_dmarc,
    parse_record,
)
from scanner.auth.psl import org_domain
from scanner.dns import Deadline, DnsSettings, get_client
from tests.auth.conftest import run

REJECT = Discovery("ok", DmarcRecord(p="reject"), "example.com")


@pytest.mark.parametrize("text,expected", [
    ("v=DMARC1; p=reject", DmarcRecord("reject")),
    ("v=DMARC1;p=quarantine;sp=none;adkim=s;aspf=s;pct=20",
     DmarcRecord("quarantine", "none", "s", "s", 20)),
    ("v=DMARC1; p=bogus; rua=mailto:x@example.com", DmarcRecord("none")),
    ("v=DMARC1; p=none; pct=500; adkim=x", DmarcRecord("none")),
    ("v=DMARC1; rua=mailto:x@example.com", DmarcRecord("none")),
    # section 6.3: syntax errors after v= are ignored, not fatal to the record
    ("v=DMARC1; p=reject; junk", DmarcRecord("reject")),
    ("v=DMARC1; p=quarantine; rua=mailto:d@example.com; ruf; fo=1",
     DmarcRecord("quarantine")),
])
def test_parse_record(text: str, expected: DmarcRecord) -> None:
    assert parse_record(text) == expected


@pytest.mark.parametrize("text", ["v=DMARC1", "p=reject; v=DMARC1", "v=DMARC2; p=reject",
                                  "junk; v=DMARC1; p=reject", "v=DMARC1; junk", ""])
def test_invalid_records(text: str) -> None:
    assert parse_record(text) is None


@pytest.mark.parametrize("text,expected", [
    ("v=DMARC1; p=reject", True), ("V=DMARC1; p=reject", True),
    ("v = DMARC1 ;p=reject", True), ("v\t=\tDMARC1; p=none", True), ("v=DMARC1", True),
    ("v=DMARC10; p=reject", False), ("v=dmarc1; p=reject", False),
    ("v=spf1 -all", False), ("p=reject; v=DMARC1", False), ("", False)])
def test_which_txt_records_are_dmarc_records(text: str, expected: bool) -> None:
    assert is_dmarc(text) is expected


def test_strict_alignment_compares_idna_forms() -> None:
    assert aligned("bücher.example", "xn--bcher-kva.example", "s")
    assert aligned("XN--BCHER-KVA.example.", "bücher.example", "s")
    assert not aligned("mail.bücher.example", "xn--bcher-kva.example", "s")


def test_alignment_uses_the_public_suffix_list() -> None:
    assert org_domain("a.b.example.co.uk") == "example.co.uk"
    assert org_domain("co.uk") == "co.uk"
    assert aligned("mail.example.co.uk", "example.co.uk", "r")
    assert not aligned("example.co.uk", "other.co.uk", "r")
    assert not aligned("mail.example.com", "example.com", "s")
    assert aligned("Example.COM.", "example.com", "s")


def test_organizational_domains_come_from_the_icann_section(tmp_path) -> None:
    """As documented: only the PSL's ICANN section counts, so a private-section suffix
    (github.io, blogspot.com) is itself the organizational domain of its subdomains."""
    assert org_domain("foo.github.io") == "github.io"
    assert org_domain("x.blogspot.com") == "blogspot.com"
    assert org_domain("Mail.Example.CO.UK.") == "example.co.uk"
    assert org_domain("a.example.公司") == "example.xn--55qx5d"  # an IDN suffix
    psl = tmp_path / "psl.dat"
    psl.write_text("// ===BEGIN ICANN DOMAINS===\ntest\nco.test\n// ===END ICANN DOMAINS===\n"
                   "// ===BEGIN PRIVATE DOMAINS===\nhosted.test\n"
                   "// ===END PRIVATE DOMAINS===\n", encoding="utf-8")
    assert org_domain("a.b.example.co.test", str(psl)) == "example.co.test"
    assert org_domain("a.b.hosted.test", str(psl)) == "hosted.test"


def test_pass_needs_an_aligned_identifier() -> None:
    dkim_other = [DkimResult("pass", "other.example")]
    dkim_ours = [DkimResult("pass", "mail.example.com")]
    assert evaluate("example.com", REJECT, ("pass", "other.example"), dkim_other
                    ).result == "fail"
    assert evaluate("example.com", REJECT, ("fail", "example.com"), dkim_ours
                    ).dkim_aligned is True
    ok = evaluate("example.com", REJECT, ("pass", "bounce.example.com"), [])
    assert (ok.result, ok.spf_aligned, ok.dkim_aligned) == ("pass", True, False)


def test_policy_and_pct() -> None:
    fail = evaluate("example.com", REJECT, ("fail", "example.com"), [])
    assert (fail.result, fail.policy, fail.disposition) == ("fail", "reject", "reject")
    half = Discovery("ok", DmarcRecord(p="reject", pct=50), "example.com")
    assert evaluate("example.com", half, None, [], sample=lambda: 0.3).disposition == "reject"
    assert evaluate("example.com", half, None, [], sample=lambda: 0.7
                    ).disposition == "quarantine"
    sub = Discovery("ok", DmarcRecord(p="none", sp="reject"), "example.com")
    assert evaluate("x.example.com", sub, None, []).disposition == "reject"
    assert evaluate("example.com", sub, None, []).disposition == "none"


def test_temporary_errors() -> None:
    assert evaluate("example.com", Discovery("temperror"), None, []).result == "temperror"
    spf_temp = evaluate("example.com", REJECT, ("temperror", "example.com"), [])
    dkim_temp = evaluate("example.com", REJECT, None, [DkimResult("temperror", "example.com")])
    unrelated = evaluate("example.com", REJECT, None, [DkimResult("temperror", "other.test")])
    assert (spf_temp.result, dkim_temp.result, unrelated.result) == (
        "temperror", "temperror", "fail")
    assert evaluate("example.com", Discovery("none"), None, []).result == "none"


@pytest.mark.parametrize("domain,status,where,policy", [
    ("good.test", "ok", "good.test", "reject"),
    ("mail.good.test", "ok", "good.test", "reject"),
    ("child.sub.test", "ok", "sub.test", "none"),
    ("nodmarc.test", "none", "", None),
    ("outside.invalid", "temperror", "outside.invalid", None),
    # a From domain with DMARC records of its own never falls back to its parent's
    ("twice.good.test", "none", "twice.good.test", None),  # two records: no policy
    ("typo.good.test", "none", "typo.good.test", None),  # p=rejcet, no rua: invalid
    ("upper.good.test", "ok", "upper.good.test", "none"),  # "V = DMARC1" is a record
])
def test_discovery(dns_settings: DnsSettings, domain: str, status: str, where: str,
                   policy: str | None) -> None:
    client = get_client(dns_settings)
    found = run(discover(domain, lambda n, t: client.query(n, t, Deadline(5))))
    assert (found.status, found.domain) == (status, where)
    assert (found.record.p if found.record else None) == policy

"""SPF (RFC 7208) against real records: every mechanism, modifiers, macros, limits."""

from __future__ import annotations

import dns.rdataclass
import dns.rdatatype
import pytest
from dns.rdtypes.ANY.TXT import TXT

from scanner.auth.spf import SpfChecker, SpfResult
from scanner.auth.spf_macro import MacroContext, expand
from scanner.auth.spf_record import (
    SpfSyntaxError,
    macro_text,
    parse_macro_string,
    parse_record,
)
from scanner.dns import Deadline, DnsSettings, get_client
from scanner.dns.client import Answer, Status
from tests.auth.conftest import run

CASES = [
    # (domain, client ip, expected result)
    ("spf.test", "192.0.2.5", "pass"),
    ("spf.test", "192.0.2.200", "fail"),
    ("ip4.spf.test", "192.0.2.1", "pass"),
    ("ip4.spf.test", "::ffff:192.0.2.1", "pass"),  # IPv4-mapped is IPv4
    ("ip4.spf.test", "192.0.2.2", "fail"),
    ("ip4net.spf.test", "192.0.2.254", "pass"),
    ("ip6.spf.test", "2001:db8::beef", "pass"),
    ("ip6.spf.test", "2001:db9::1", "fail"),
    ("ip6.spf.test", "192.0.2.1", "fail"),
    ("a.spf.test", "192.0.2.10", "pass"),
    ("a.spf.test", "2001:db8::10", "pass"),
    ("a.spf.test", "192.0.2.11", "fail"),
    ("acidr.spf.test", "198.51.100.200", "pass"),
    ("acidr.spf.test", "198.51.101.1", "fail"),
    ("a6cidr.spf.test", "2001:db8::ffff", "pass"),
    ("a6cidr.spf.test", "192.0.2.11", "fail"),
    ("mx.spf.test", "192.0.2.21", "pass"),
    ("mx.spf.test", "192.0.2.22", "fail"),
    ("mxcidr.spf.test", "192.0.2.23", "pass"),
    ("nullmx.spf.test", "192.0.2.1", "fail"),
    ("include.spf.test", "192.0.2.1", "pass"),
    ("include.spf.test", "192.0.2.2", "fail"),
    ("incsoft.spf.test", "192.0.2.2", "fail"),  # include's softfail is "no match"
    ("incnone.spf.test", "192.0.2.1", "permerror"),
    ("exists.spf.test", "192.0.2.30", "pass"),
    ("exists.spf.test", "192.0.2.31", "fail"),
    ("ptr.spf.test", "192.0.2.40", "pass"),
    ("ptr.spf.test", "192.0.2.41", "fail"),  # PTR name does not resolve back
    ("redirect.spf.test", "192.0.2.1", "pass"),
    ("redirect.spf.test", "192.0.2.9", "fail"),
    ("redirnone.spf.test", "192.0.2.1", "permerror"),
    ("redirall.spf.test", "192.0.2.9", "neutral"),  # all matched: redirect ignored
    ("soft.spf.test", "192.0.2.1", "softfail"),
    ("neutral.spf.test", "192.0.2.1", "neutral"),
    ("default.spf.test", "192.0.2.1", "neutral"),
    ("plusall.spf.test", "192.0.2.1", "pass"),
    ("nothing.spf.test", "192.0.2.1", "none"),
    ("other.spf.test", "192.0.2.1", "none"),
    ("two.spf.test", "192.0.2.1", "permerror"),
    ("syntax.spf.test", "192.0.2.1", "permerror"),
    ("badcidr.spf.test", "192.0.2.1", "permerror"),
    ("badmacro.spf.test", "192.0.2.1", "permerror"),
    ("loop.spf.test", "192.0.2.1", "permerror"),
    ("voids.spf.test", "192.0.2.1", "permerror"),
    ("twovoids.spf.test", "192.0.2.1", "pass"),
    ("many.spf.test", "192.0.2.1", "permerror"),
    ("ten.spf.test", "192.0.2.1", "pass"),
    ("macroip.spf.test", "192.0.2.1", "pass"),
    ("macroip.spf.test", "192.0.2.2", "fail"),
    ("temp.spf.test", "192.0.2.1", "temperror"),
    ("tempmx.spf.test", "192.0.2.1", "temperror"),
    ("singlelabel", "192.0.2.1", "none"),
]


def check(settings: DnsSettings, domain: str, ip: str, sender: str | None = None,
          helo: str = "mail.example.test") -> SpfResult:
    client = get_client(settings)

    async def lookup(name: str, rdtype: str):
        return await client.query(name, rdtype, Deadline(5))

    return run(SpfChecker(lookup, "mx.test").check_host(
        ip, domain, sender or f"user@{domain}", helo))


@pytest.mark.parametrize("domain,ip,expected", CASES)
def test_check_host(dns_settings: DnsSettings, domain: str, ip: str, expected: str) -> None:
    result = check(dns_settings, domain, ip)
    assert result.result == expected, result


def test_macros_in_exists(dns_settings: DnsSettings) -> None:
    assert check(dns_settings, "macro.spf.test", "192.0.2.77",
                 sender="user+tag@macro.spf.test").result == "pass"
    assert check(dns_settings, "macro.spf.test", "192.0.2.77",
                 sender="other+tag@macro.spf.test").result == "fail"
    assert check(dns_settings, "macroh.spf.test", "192.0.2.77",
                 helo="helo.spf.test").result == "pass"


def test_explanation_on_fail(dns_settings: DnsSettings) -> None:
    result = check(dns_settings, "exp.spf.test", "192.0.2.8", sender="joe@exp.spf.test")
    assert result.result == "fail"
    assert result.explanation == "192.0.2.8 may not send mail for exp.spf.test (joe)"


def test_helo_identity(dns_settings: DnsSettings) -> None:
    ok = check(dns_settings, "helo.spf.test", "192.0.2.1", sender="postmaster@helo.spf.test")
    bad = check(dns_settings, "helo.spf.test", "192.0.2.2", sender="postmaster@helo.spf.test")
    assert (ok.result, bad.result) == ("pass", "fail")


def test_mechanism_is_reported(dns_settings: DnsSettings) -> None:
    assert check(dns_settings, "ip4.spf.test", "192.0.2.1").mechanism == "ip4:192.0.2.1/32"
    assert check(dns_settings, "soft.spf.test", "192.0.2.1").mechanism == "~all"


def test_ipv6_macro_expansion() -> None:
    ctx = MacroContext("strong-bad@email.example.com", "email.example.com",
                       "2001:db8::cb01", "mx.example.org")

    async def no_p() -> str:
        return "unknown"

    spec = parse_macro_string("%{ir}.%{v}._spf.%{d2}")
    expanded = run(expand(spec, ctx, no_p))
    assert expanded.endswith(".8.b.d.0.1.0.0.2.ip6._spf.example.com")
    assert expanded.startswith("1.0.b.c.0.0.0.0.")


@pytest.mark.parametrize("macro,expected", [
    ("%{s}", "strong-bad@email.example.com"),
    ("%{o}", "email.example.com"),
    ("%{d}", "email.example.com"),
    ("%{d4}", "email.example.com"),
    ("%{d3}", "email.example.com"),
    ("%{d2}", "example.com"),
    ("%{d1}", "com"),
    ("%{dr}", "com.example.email"),
    ("%{d2r}", "example.email"),
    ("%{l}", "strong-bad"),
    ("%{l-}", "strong.bad"),
    ("%{lr}", "strong-bad"),
    ("%{lr-}", "bad.strong"),
    ("%{l1r-}", "strong"),
    ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
    ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
    ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
    ("%{S}", "strong-bad%40email.example.com"),
    ("a%%b%_c%-d", "a%b c%20d"),
])
def test_macro_expansion(macro: str, expected: str) -> None:
    ctx = MacroContext("strong-bad@email.example.com", "email.example.com", "192.0.2.3",
                       "mx.example.org")

    async def no_p() -> str:
        return "unknown"

    assert run(expand(parse_macro_string(macro), ctx, no_p, domain_spec=False)) == expected


@pytest.mark.parametrize("record", [
    "v=spf1 a:", "v=spf1 include", "v=spf1 all:foo", "v=spf1 ip4:300.1.1.1",
    "v=spf1 ip6:2001:db8::/129", "v=spf1 a/33", "v=spf1 a//129", "v=spf1 mx:%{c}.x.test",
    "v=spf1 redirect=a.test redirect=b.test", "v=spf1 exp=a.test exp=b.test",
    "v=spf1 exists:%{z}.x.test", "v=spf1 a:com", "v=spf1 a:1.2.3.4", "v=spf1 =foo",
    "v=spf1 -ip4:192.0.2.1/024",
    # terms are separated by spaces only (RFC 7208 4.6.1): other whitespace is in a term
    "v=spf1 ip4:192.0.2.5\n include:_spf.example.test ~all",
    "v=spf1 a:ctrl.example.test\rptr -all", "v=spf1 ip4:192.0.2.1\t-all",
    "v=spf1 -all\n",
    "v=spf1 a:example.com/333", "v=spf1 a:%{d}/24/", "v=spf1 a/abc", "v=spf1 mx:x.test/",
])
def test_syntax_errors(record: str) -> None:
    with pytest.raises(SpfSyntaxError):
        parse_record(record)


def test_unknown_modifiers_are_ignored() -> None:
    record = parse_record("v=spf1 -ip4:192.0.2.0/24 moo=%{d}.cow ~all")
    assert [m.name for m in record.mechanisms] == ["ip4", "all"]
    assert record.mechanisms[0].qualifier == "-"


@pytest.mark.parametrize("term,domain,cidr4", [
    ("a:foo:bar/baz.example.com", "foo:bar/baz.example.com", 32),
    ("mx:foo:bar/baz.example.com/24", "foo:bar/baz.example.com", 24),
    ("a:x.example.com/24//64", "x.example.com", 24),
])
def test_slash_in_domain_spec(term: str, domain: str, cidr4: int) -> None:
    """'/' is a legal character of a domain-spec (RFC 7208 7.1); only a CIDR length at
    the end of the term is one."""
    (mech,) = parse_record(f"v=spf1 {term}").mechanisms
    assert (macro_text(mech.domain), mech.cidr4) == (domain, cidr4)


def test_included_explanation_is_not_fetched() -> None:
    """An included record's exp= is never used (RFC 7208 sections 5.2 and 6.2), so it is
    not looked up: those queries would count against no limit."""
    texts = {"outer.test": "v=spf1 include:inner.test -all exp=why.outer.test",
             "inner.test": "v=spf1 -all exp=why.inner.test",
             "why.outer.test": "%{i} is not allowed", "why.inner.test": "never used"}
    asked: list[str] = []

    async def lookup(name: str, rdtype: str) -> Answer:
        asked.append(name)
        if name not in texts:
            return Answer(Status.NXDOMAIN)
        return Answer(Status.OK, (TXT(dns.rdataclass.IN, dns.rdatatype.TXT,
                                      [texts[name].encode()]),))

    result = run(SpfChecker(lookup).check_host("192.0.2.1", "outer.test", "a@outer.test"))
    assert (result.result, result.explanation) == ("fail", "192.0.2.1 is not allowed")
    assert asked == ["outer.test", "inner.test", "why.outer.test"]

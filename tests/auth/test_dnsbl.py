"""DNSBL and URIBL checks against test lists served by NSD; URL extraction."""

from __future__ import annotations

from typing import Any

import pytest

from decoders import unpack
from scanner.auth.received import task_chain
from scanner.auth.urls import from_html, from_parts, from_text, normalise_host
from scanner.checks.dnsbl import Dnsbl
from scanner.checks.uribl import Uribl
from scanner.errors import ConfigError
from scanner.task import ClientInfo, Hit
from scanner.testing.dns_server import BlackHole, DnsServer
from scanner.testing.tasks import task_from_bytes
from tests.auth.conftest import dns_table, make_check, run

LISTS = [
    {"zone": "bl.test", "ipv6": True,
     "codes": {"127.0.0.2": "RCVD_IN_SBL", "127.0.0.4": "RCVD_IN_XBL",
               "127.0.0.10": "RCVD_IN_PBL"}},
    {"zone": "refused.test", "symbol": "RCVD_IN_REFUSED"},
]
MESSAGE = b"From: a@good.test\r\nTo: b@ours.test\r\nSubject: hi\r\n\r\nhello\r\n"


def dnsbl(server: DnsServer | BlackHole, **extra: Any) -> Dnsbl:
    return make_check(Dnsbl, {"dns": dns_table(server), "lists": LISTS, **extra})


def dnsbl_hits(check: Dnsbl, ip: str, bank: str = "", raw: bytes = MESSAGE
               ) -> dict[str, Hit]:
    with task_from_bytes(raw, client=ClientInfo(addr=ip, helo="x.test"),
                         policy_bank=bank) as task:
        return {h.symbol: h for h in run(check.run(task))}


def test_listed_client(dns_server: DnsServer) -> None:
    check = dnsbl(dns_server)
    hits = dnsbl_hits(check, "192.0.2.66")
    assert hits["RCVD_IN_SBL"].options == ("192.0.2.66", "bl.test", "127.0.0.2")
    assert hits["DNSBL_BLOCKED"].options == ("refused.test=127.255.255.254",)
    assert "RCVD_IN_REFUSED" not in hits
    assert {"RCVD_IN_SBL", "RCVD_IN_PBL"} <= set(dnsbl_hits(check, "192.0.2.68"))
    assert "RCVD_IN_XBL" in dnsbl_hits(check, "192.0.2.67")
    assert "RCVD_IN_SBL" in dnsbl_hits(check, "2001:db8::66")


def test_refusal_and_bogus_answers_are_not_listings(dns_server: DnsServer) -> None:
    check = make_check(Dnsbl, {"dns": dns_table(dns_server), "lists": LISTS[:1]})
    assert set(dnsbl_hits(check, "192.0.2.69")) == {"DNSBL_BLOCKED"}  # 127.255.255.254
    assert set(dnsbl_hits(check, "192.0.2.70")) == {"DNSBL_BLOCKED"}  # 203.0.113.5
    assert dnsbl_hits(check, "192.0.2.71") == {}


def test_listings_behind_cname_chains(dns_server: DnsServer) -> None:
    """Some lists answer with a CNAME to one shared record per listing code: the
    chain's A records are the listing; a CNAME to nothing (NXDOMAIN) is none."""
    check = make_check(Dnsbl, {"dns": dns_table(dns_server), "lists": LISTS[:1]})
    for ip in ("192.0.2.72", "192.0.2.73"):  # one CNAME, a chain of two
        hits = dnsbl_hits(check, ip)
        assert set(hits) == {"RCVD_IN_SBL"}
        assert hits["RCVD_IN_SBL"].options == (ip, "bl.test", "127.0.0.2")
    assert dnsbl_hits(check, "192.0.2.74") == {}


def test_skipped_clients(dns_server: DnsServer) -> None:
    check = dnsbl(dns_server)
    assert dnsbl_hits(check, "10.1.2.3") == {}  # private address
    assert dnsbl_hits(check, "127.0.0.2") == {}  # trusted
    assert dnsbl_hits(check, "192.0.2.66", bank="ORIGINATING") == {}
    ipv4_only = make_check(Dnsbl, {"dns": dns_table(dns_server),
                                   "lists": [{**LISTS[0], "ipv6": False}]})
    assert dnsbl_hits(ipv4_only, "2001:db8::66") == {}


def test_client_from_received_chain(dns_server: DnsServer) -> None:
    raw = (b"Received: from bad.example (bad.example [192.0.2.66]) by mx.ours.test "
           b"(Postfix) with ESMTP id 1; Mon, 2 Jun 2025 10:00:00 +0000\r\n" + MESSAGE)
    with task_from_bytes(raw, client=ClientInfo()) as task:
        hits = {h.symbol for h in run(dnsbl(dns_server).run(task))}
    assert "RCVD_IN_SBL" in hits


def _hop(ip: str, by: str, n: int) -> bytes:
    return (f"Received: from h{n}.example (h{n}.example [{ip}]) by {by} (Postfix) with "
            f"ESMTP id Q{n}; Mon, 2 Jun 2025 10:00:00 +0000\r\n").encode()


# the client (198.51.100.7, not listed) passed on mail that 192.0.2.66 (listed) sent it
SECOND_LISTED = (_hop("198.51.100.7", "mx.ours.test", 1)
                 + _hop("192.0.2.66", "h1.example", 2) + MESSAGE)


def test_all_untrusted_scope_finds_a_listed_second_relay(dns_server: DnsServer) -> None:
    lists = [{**LISTS[0], "scope": "all-untrusted"}]
    with task_from_bytes(SECOND_LISTED, client=ClientInfo()) as task:
        hits = {h.symbol: h for h in run(make_check(
            Dnsbl, {"dns": dns_table(dns_server), "lists": lists}).run(task))}
    assert hits["RCVD_IN_SBL"].options == ("192.0.2.66", "bl.test", "127.0.0.2")
    for scope in ("untrusted", "last-external"):  # one relay: the client only
        one = [{**LISTS[0], "scope": scope}]
        with task_from_bytes(SECOND_LISTED, client=ClientInfo()) as task:
            assert run(make_check(Dnsbl, {"dns": dns_table(dns_server),
                                          "lists": one}).run(task)) == []


def test_a_symbol_counts_once_however_many_relays_are_listed(dns_server: DnsServer) -> None:
    raw = (_hop("192.0.2.66", "mx.ours.test", 1) + _hop("192.0.2.68", "h1.example", 2)
           + MESSAGE)
    lists = [{**LISTS[0], "scope": "all-untrusted"}]
    with task_from_bytes(raw, client=ClientInfo()) as task:
        hits = [h.symbol for h in run(make_check(
            Dnsbl, {"dns": dns_table(dns_server), "lists": lists}).run(task))]
    assert sorted(hits) == ["RCVD_IN_PBL", "RCVD_IN_SBL"]


def test_forged_chain_is_looked_up_within_max_relays() -> None:
    """200 forged Received lines: at most max_relays look-ups per all-untrusted list,
    the real client (the first untrusted relay) always among them."""
    forged = b"".join(_hop(f"198.51.{n // 200}.{n % 200 + 1}", f"h{n - 1}.example", n)
                      for n in range(2, 202))
    raw = _hop("203.0.113.9", "mx.ours.test", 1) + forged + MESSAGE
    lists = [{**LISTS[0], "scope": "all-untrusted"},
             {"zone": "other.test", "symbol": "RCVD_IN_OTHER", "scope": "last-external"}]
    check = make_check(Dnsbl, {"lists": lists, "max_relays": 4})
    with task_from_bytes(raw, client=ClientInfo()) as task:
        chain = task_chain(task, check._nets.trusted, check._nets.internal)
        jobs = check._jobs(chain)
    assert len(chain.untrusted) == 100  # the walk itself stops at MAX_HOPS
    assert [(c.zone, ip) for c, ip in jobs] == [
        ("bl.test", "203.0.113.9"), ("bl.test", "198.51.0.3"), ("bl.test", "198.51.0.4"),
        ("bl.test", "198.51.0.5"), ("other.test", "203.0.113.9")]


def test_timeout_is_tempfail(black_hole: BlackHole) -> None:
    check = make_check(Dnsbl, {"dns": {"resolvers": [black_hole.resolver], "timeout": 0.2,
                                       "budget": 0.4}, "lists": LISTS})
    hits = dnsbl_hits(check, "192.0.2.66")
    assert set(hits) == {"DNSBL_TEMPFAIL"}
    assert hits["DNSBL_TEMPFAIL"].options == ("bl.test", "refused.test")


@pytest.mark.parametrize("lists,key", [
    ([{"zone": "not a zone", "symbol": "X_Y"}], "lists[0].zone"),
    ([{"zone": "bl.test", "symbol": "lower"}], "lists[0].symbol"),
    ([{"zone": "bl.test", "symbol": "DNSBL_FAIL"}], "lists[0].symbol"),
    ([{"zone": "bl.test", "codes": {"x": "SYM_A"}}], "lists[0].codes"),
    ([{"zone": "bl.test", "bitmask": {"300": "SYM_A"}}], "lists[0].bitmask"),
    ([{"zone": "bl.test"}], "lists[0].symbol"),
    ([{"zone": "bl.test", "symbol": "SYM_A", "blocked": ["nonsense"]}], "lists[0].blocked"),
    ([{"zone": "bl.test", "symbol": "SYM_A", "scope": "everyone"}], "lists[0].scope"),
])
def test_bad_list_settings_name_the_key(lists: list, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        make_check(Dnsbl, {"lists": lists})


def test_default_lists_are_valid_and_off_by_default() -> None:
    check = make_check(Dnsbl, {})
    assert Dnsbl.default_enabled is False and Uribl.default_enabled is False
    assert len(check._lists) == 4
    assert len(make_check(Uribl, {})._lists) == 3
    # SpamAssassin's scopes: SBL and SpamCop for every untrusted relay, the rest not
    scopes = {(lst.zone, s): lst.scope for lst, _ in check._lists
              for s in (lst.symbol, *lst.codes.values()) if s}
    assert scopes[("zen.spamhaus.org", "RCVD_IN_SBL")] == "all-untrusted"
    assert scopes[("zen.spamhaus.org", "RCVD_IN_XBL")] == "last-external"
    assert scopes[("zen.spamhaus.org", "RCVD_IN_PBL")] == "last-external"
    assert scopes[("bl.spamcop.net", "RCVD_IN_SPAMCOP")] == "all-untrusted"
    assert scopes[("psbl.surriel.com", "RCVD_IN_PSBL")] == "last-external"


URIBL_LISTS = [
    {"zone": "ubl.test", "codes": {"127.0.1.2": "URIBL_DBL_SPAM",
                                   "127.0.1.4": "URIBL_DBL_PHISH"}},
    {"zone": "mbl.test", "ips": True, "blocked": ["127.0.0.1/32"],
     "bitmask": {"2": "URIBL_BLACK", "4": "URIBL_GREY", "8": "URIBL_RED"}},
]
HTML_MAIL = (
    b"From: a@x.test\r\nTo: b@ours.test\r\nSubject: offer\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative; boundary=XX\r\n\r\n--XX\r\n"
    b"Content-Type: text/plain\r\n\r\nSee http://www.shop.evil-domain.test/buy and "
    b"www.grey.test or https://user@203.0.113.5:8080/x, also www.quota.test.\r\n"
    b"--XX\r\nContent-Type: text/html\r\n\r\n<p>Hi <a href=\"https://login.phish.test/"
    b"x\">your bank</a> <img src='//cdn.clean.test/p.png'></p>\r\n--XX--\r\n")


def test_uribl_lookups(dns_server: DnsServer) -> None:
    check = make_check(Uribl, {"dns": dns_table(dns_server), "lists": URIBL_LISTS})
    with task_from_bytes(HTML_MAIL) as task:
        domains, ips = check.targets(task)
        hits = {h.symbol: h for h in run(check.run(task))}
    assert domains == ["evil-domain.test", "grey.test", "quota.test", "phish.test",
                       "clean.test"]
    assert ips == ["203.0.113.5"]
    assert hits["URIBL_DBL_SPAM"].options == ("evil-domain.test",)
    assert hits["URIBL_DBL_PHISH"].options == ("phish.test",)
    assert hits["URIBL_BLACK"].options == ("grey.test",)
    assert hits["URIBL_GREY"].options == ("grey.test",)
    assert hits["URIBL_RED"].options == ("203.0.113.5",)
    assert hits["URIBL_BLOCKED"].options == ("mbl.test=127.0.0.1",)


def test_uribl_limits_and_skips(dns_server: DnsServer) -> None:
    check = make_check(Uribl, {"dns": dns_table(dns_server), "lists": URIBL_LISTS,
                               "max_domains": 2, "skip_domains": ["evil-domain.test"]})
    with task_from_bytes(HTML_MAIL) as task:
        assert check.targets(task) == (["grey.test", "quota.test"], [])


def test_url_extraction() -> None:
    found = from_text("go to HTTP://WWW.Example.CO.UK/path?q=1, ftp://files.example.org:21/ "
                      "or www2.example.net. Mail me@notaurl.example. Bad: http://-x-.test/ "
                      "http://[2001:db8::1]/ http://3221225985/ http://xn--bcher-kva.example/"
                      " https://b%C3%BCcher.example/ http://localhost/")
    assert found.hosts == ["www.example.co.uk", "files.example.org", "xn--bcher-kva.example",
                           "www2.example.net"]
    assert found.ips == ["2001:db8::1", "192.0.2.1"]
    html = from_html('<a href="http://a.example/">x</a><form action="//b.example/s">'
                     "<img src=http://c.example/i.png>")
    assert html.hosts == ["a.example", "b.example", "c.example"]


@pytest.mark.parametrize(("host", "expected"), [
    ("WWW.Example.COM.", "www.example.com"),
    (" .example.org ", "example.org"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("localhost", ""),
    ("-x-.test", ""),
    ("a..example", ""),
    ("", ""),
    ("x" * 250 + ".com", ""),
])
def test_normalise_host(host: str, expected: str) -> None:
    assert normalise_host(host) == expected


def test_hosts_from_decoded_parts_include_rendered_html_text() -> None:
    raw = (b"From: a@example.org\r\nContent-Type: text/html\r\n\r\n"
           b"<p>visit www.&#101;xample-one.test today</p>"
           b'<a href="http://two.example/x">two</a>\r\n')
    with unpack(raw) as result:
        found = from_parts(result.parts)
    # the entity-encoded host only appears in the rendered text, the link only in markup
    assert "www.example-one.test" in found.hosts
    assert "two.example" in found.hosts


def test_uribl_reads_the_rules_rendering_of_html_made_once_per_part(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import scanner.rules.views as views

    rendered: list[str] = []
    real = views.render

    def counting(text: str) -> Any:
        rendered.append(text)
        return real(text)

    monkeypatch.setattr(views, "render", counting)
    raw = (b"From: a@example.org\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\n"
           b"<p>visit www.&#101;xample-one.test today</p>\r\n")
    with unpack(raw) as result:
        found = from_parts(result.parts, views.html_text)
        body = views.MessageView(raw, parts=result.parts).body_joined
    assert found.hosts == ["www.example-one.test"]
    assert b"visit www.example-one.test today" in body
    assert len(rendered) == 1  # the rules' body view reused the URI finder's render
    with unpack(raw) as result:  # and the other way round
        assert b"www.example-one.test" in views.MessageView(raw, parts=result.parts).body_joined
        assert from_parts(result.parts, views.html_text).hosts == ["www.example-one.test"]
    assert len(rendered) == 2


def test_uribl_reads_html_in_other_charsets_by_its_declared_charset() -> None:
    import scanner.rules.views as views

    html = "<p>Заходите на www.пример.рф сегодня</p>".encode("windows-1251")
    raw = (b"From: a@example.org\r\nContent-Type: text/html; charset=windows-1251\r\n\r\n"
           + html + b"\r\n")
    with unpack(raw) as result:
        found = from_parts(result.parts, views.html_text)
    assert found.hosts == ["www.xn--e1afmkfd.xn--p1ai"]


def test_uribl_targets_of_a_message_with_30000_link_hosts_take_linear_time() -> None:
    """Every distinct host is read, but the look-ups stop at max_domains (SpamAssassin's
    uridnsbl_max_domains) and gathering them must not be quadratic: 6.7 s here before."""
    import time

    body = "\r\n".join(f"http://h{i}.d{i}.example/x" for i in range(30000)).encode()
    raw = b"From: a@x.test\r\nTo: b@ours.test\r\nSubject: s\r\n\r\n" + body + b"\r\n"
    check = make_check(Uribl, {"lists": URIBL_LISTS, "skip_domains": ["d1.example"]})
    with task_from_bytes(raw) as task:
        began = time.monotonic()
        domains, ips = check.targets(task)
        spent = time.monotonic() - began
    assert domains == [f"d{i}.example" for i in range(21) if i != 1] and ips == []
    assert spent < 2.0, f"{spent:.2f} s for 30,000 link hosts"


def test_a_list_that_lists_everything_is_not_believed(
        dns_server: DnsServer, caplog: pytest.LogCaptureFixture) -> None:
    """RFC 5782 section 5: 127.0.0.1 and INVALID must not be listed. dead.test answers
    127.0.0.2 for every name (a dead list's wildcard): its listings are not counted,
    the check says BLOCKED with why, and the log names the list once."""
    dead_ip = {"zone": "dead.test", "symbol": "RCVD_IN_DEAD"}
    check = make_check(Dnsbl, {"dns": dns_table(dns_server), "lists": [LISTS[0], dead_ip]})
    with caplog.at_level("WARNING", logger="scanner.dnsbl"):
        first = dnsbl_hits(check, "192.0.2.66")
        second = dnsbl_hits(check, "192.0.2.71")
    assert set(first) == {"RCVD_IN_SBL", "DNSBL_BLOCKED"}
    assert first["DNSBL_BLOCKED"].options == ("dead.test=lists-everything",)
    assert set(second) == {"DNSBL_BLOCKED"}
    assert len([r for r in caplog.records if "dead.test" in r.getMessage()]) == 1
    dead_uri = {"zone": "dead.test", "symbol": "URIBL_DEAD"}
    uribl = make_check(Uribl, {"dns": dns_table(dns_server),
                               "lists": [URIBL_LISTS[0], dead_uri]})
    with task_from_bytes(HTML_MAIL) as task:
        hits = {h.symbol: h for h in run(uribl.run(task))}
    assert set(hits) == {"URIBL_DBL_SPAM", "URIBL_DBL_PHISH", "URIBL_BLOCKED"}
    assert hits["URIBL_BLOCKED"].options == ("dead.test=lists-everything",)


def test_an_ipv4_mapped_client_address_is_looked_up_as_ipv4(dns_server: DnsServer) -> None:
    """A dual-stack listener or another MTA's milter reports IPv4 peers as
    ::ffff:a.b.c.d; the Received parser already reads them as IPv4, the XFORWARD/milter
    client address was looked up as IPv6 (IPv4-only lists skipped: unchecked)."""
    ipv4_only = make_check(Dnsbl, {"dns": dns_table(dns_server),
                                   "lists": [{**LISTS[0], "ipv6": False}]})
    hits = dnsbl_hits(ipv4_only, "::ffff:192.0.2.66")
    assert hits["RCVD_IN_SBL"].options == ("192.0.2.66", "bl.test", "127.0.0.2")


def test_failing_lookups_are_logged_once_not_just_a_zero_weight_symbol(
        dns_server: DnsServer, caplog: pytest.LogCaptureFixture) -> None:
    """A resolver that refuses us (NSD refuses names outside its zones) leaves the list
    unchecked on every message: DNSBL_TEMPFAIL each time, and one warning that says so."""
    check = make_check(Dnsbl, {"dns": dns_table(dns_server), "lists": [
        LISTS[0], {"zone": "not-served.invalid", "symbol": "RCVD_IN_NOWHERE"}]})
    with caplog.at_level("WARNING", logger="scanner.dnsbl"):
        first = dnsbl_hits(check, "192.0.2.66")
        second = dnsbl_hits(check, "192.0.2.67")
    assert first["DNSBL_TEMPFAIL"].options == second["DNSBL_TEMPFAIL"].options \
        == ("not-served.invalid",)
    assert "RCVD_IN_SBL" in first and "RCVD_IN_XBL" in second
    warnings = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(warnings) == 1 and "not-served.invalid" in warnings[0]


IDN_MAIL = ("From: a@x.test\r\nTo: b@ours.test\r\nSubject: offer\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            "\r\nSee http://shop\u3002fa\u00df\uff0ede/ and http://\u03c3\u03bf\u03c6\u03cc"
            "\u03c2\uff61gr/x and https://%D0%BF%D1%80%D0%B8%D0%BC%D0%B5%D1%80.%D1%80%D1%84/"
            " and http://b\u00fccher.example/ and http://i\u2764.ws/\r\n").encode("utf-8")


def test_uribl_looks_up_idn_link_hosts_in_their_idna2008_a_label_form(
        dns_server: DnsServer) -> None:
    """The registered domain of a U-label host, with IDNA's other dots or
    percent-encoded, in the A-label form libidn2 gives SpamAssassin (IDNA 2008,
    non-transitional): faß.de is xn--fa-hia.de, not fass.de (IDNA 2003, Python's
    codec), a different domain; final sigma stays. skip_domains in U-labels match."""
    check = make_check(Uribl, {"dns": dns_table(dns_server), "lists": URIBL_LISTS,
                               "skip_domains": ["b\u00fccher.example"]})
    with task_from_bytes(IDN_MAIL) as task:
        domains, _ = check.targets(task)
    # i❤.ws: UTS #46 (browsers) takes the symbol IDNA 2008 refuses: the browser's name
    assert domains == ["xn--fa-hia.de", "xn--0xagbn4a.gr", "xn--e1afmkfd.xn--p1ai",
                       "xn--i-7iq.ws"]


def test_a_dead_zone_split_into_two_lists_is_not_believed(dns_server: DnsServer) -> None:
    """ZEN is two lists (SBL codes for every untrusted relay, XBL codes for the last
    external one): the RFC 5782 probe must count as listed when any list of the zone
    would count its answer, whichever list asked first. dead.test answers 127.0.0.2."""
    halves = [{"zone": "dead.test", "codes": {"127.0.0.4": "RCVD_IN_DEAD_XBL"},
               "scope": "last-external"},
              {"zone": "dead.test", "codes": {"127.0.0.2": "RCVD_IN_DEAD_SBL"},
               "scope": "all-untrusted"}]
    check = make_check(Dnsbl, {"dns": dns_table(dns_server), "lists": halves})
    hits = dnsbl_hits(check, "192.0.2.71")
    assert set(hits) == {"DNSBL_BLOCKED"}
    assert hits["DNSBL_BLOCKED"].options == ("dead.test=lists-everything",)


def _scope_hits(dns_server: DnsServer, raw: bytes, scope: str, **extra: Any) -> set[str]:
    lists = [{**LISTS[0], "scope": scope}]
    check = make_check(Dnsbl, {"dns": dns_table(dns_server), "lists": lists, **extra})
    with task_from_bytes(raw, client=ClientInfo()) as task:
        return {h.symbol for h in run(check.run(task))}


# the client has a private address (a NAT in front of our MX: untrusted, never looked
# up); behind it 192.0.2.66 (SBL) and, older, 192.0.2.67 (XBL)
PRIVATE_CLIENT = (_hop("10.9.9.9", "mx.ours.test", 1) + _hop("192.0.2.66", "h1.example", 2)
                  + _hop("192.0.2.67", "h2.example", 3) + MESSAGE)


def test_first_trusted_scope_looks_up_the_first_public_untrusted_relay(
        dns_server: DnsServer) -> None:
    """SpamAssassin's -firsttrusted (Plugin/DNSEval.pm): private addresses are left out
    before the first untrusted relay is taken, and only that one is looked up."""
    assert _scope_hits(dns_server, PRIVATE_CLIENT, "first-trusted") == {"RCVD_IN_SBL"}
    assert _scope_hits(dns_server, PRIVATE_CLIENT, "untrusted") == set()  # 10.9.9.9 only
    assert _scope_hits(dns_server, SECOND_LISTED, "first-trusted") == set()  # 198.51.100.7


def test_not_first_hop_scope_leaves_out_the_oldest_relay(dns_server: DnsServer) -> None:
    """SpamAssassin's -notfirsthop: every external relay but the oldest (the sender's
    own host, expected in a dial-up list), which is looked up when it is the only one."""
    assert _scope_hits(dns_server, PRIVATE_CLIENT, "not-first-hop") == {"RCVD_IN_SBL"}
    only = _hop("192.0.2.67", "mx.ours.test", 1) + MESSAGE
    assert _scope_hits(dns_server, only, "not-first-hop") == {"RCVD_IN_XBL"}
    assert _scope_hits(dns_server, SECOND_LISTED, "not-first-hop") == set()  # .66 oldest


def test_not_first_hop_skips_trusted_relays_outside_internal_networks(
        dns_server: DnsServer) -> None:
    """A trusted partner relay outside internal_networks is external, and counts for
    the oldest-hop rule, but is not looked up (SpamAssassin looks up trusted relays
    only for its nice rules)."""
    raw = (_hop("192.0.2.66", "mx.ours.test", 1) + _hop("192.0.2.68", "partner.example", 2)
           + _hop("192.0.2.67", "h2.example", 3) + MESSAGE)
    nets = {"trusted_networks": ["127.0.0.0/8", "192.0.2.66"],
            "internal_networks": ["127.0.0.0/8"]}
    assert _scope_hits(dns_server, raw, "not-first-hop", **nets) == {
        "RCVD_IN_SBL", "RCVD_IN_PBL"}  # 192.0.2.68; .66 trusted, .67 the oldest

def test_last_external_scope_as_spamassassins_lastexternal(dns_server: DnsServer) -> None:
    """SpamAssassin's -lastexternal takes the first external relay with a public address
    and looks it up only if it is not in trusted_networks (Plugin/DNSEval.pm)."""
    partner = (_hop("192.0.2.66", "mx.ours.test", 1)
               + _hop("192.0.2.67", "partner.example", 2) + MESSAGE)
    nets = {"trusted_networks": ["127.0.0.0/8", "192.0.2.66"],
            "internal_networks": ["127.0.0.0/8"]}
    assert _scope_hits(dns_server, partner, "last-external", **nets) == set()
    assert _scope_hits(dns_server, PRIVATE_CLIENT, "last-external") == {"RCVD_IN_SBL"}

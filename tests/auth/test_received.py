"""The client from XFORWARD or the Received chain, with trusted and internal networks."""

from __future__ import annotations

import pytest

from scanner.auth.received import (
    MAX_HOPS,
    find_chain,
    find_origin,
    originating_ips,
    parse_received,
    pseudo_headers,
    task_chain,
)
from scanner.auth.received_line import UNPARSEABLE
from scanner.dns.blocked import parse_networks
from scanner.task import ClientInfo
from scanner.testing.tasks import task_from_bytes

LOCAL = parse_networks(["127.0.0.0/8", "::1"])
SITE = parse_networks(["127.0.0.0/8", "10.0.0.0/8"])

OUR_MX = ("from mail.sender.test (mail.sender.test [192.0.2.1])\r\n\tby mx.ours.test "
          "(Postfix) with ESMTPS id 4AbCd1234\r\n\tfor <bob@ours.test>; "
          "Mon, 2 Jun 2025 10:00:00 +0000")
INTERNAL = ("from mx1.ours.test (mx1.ours.test [10.0.0.5]) by mx2.ours.test (Postfix) "
            "with ESMTP id 1; Mon, 2 Jun 2025 10:00:01 +0000")
PICKUP = "by mail.ours.test (Postfix, from userid 1000) id 5F00; Mon, 2 Jun 2025"


@pytest.mark.parametrize("header,ip,rdns,helo", [
    (OUR_MX, "192.0.2.1", "mail.sender.test", "mail.sender.test"),
    ("from helo.name (unknown [198.51.100.4]) by mx.test (Postfix) with SMTP id 1",
     "198.51.100.4", "", "helo.name"),
    ("from [192.0.2.9] (helo=laptop) by mx.test with esmtp (Exim 4.96)",
     "192.0.2.9", "", "laptop"),
    ("from host.example ([IPv6:2001:db8::25]) by mx.test (Postfix) with ESMTP id 2",
     "2001:db8::25", "", "host.example"),
    ("from relay.example (relay.example [::ffff:192.0.2.7]) by mx.test with ESMTP",
     "192.0.2.7", "relay.example", "relay.example"),
    ("from EX01.corp.example (198.51.100.20) by EX02.corp.example (198.51.100.21) "
     "with Microsoft SMTP Server id 15.1", "198.51.100.20", "EX01.corp.example",
     "EX01.corp.example"),  # as SpamAssassin reads it (checked with Mail::SpamAssassin)
    ("from Mailer ([216.217.85.158]) by mailer with Microsoft SMTPSVC(5.0.2195.4905)",
     "216.217.85.158", "", "Mailer"),
])
def test_parse_received(header: str, ip: str, rdns: str, helo: str) -> None:
    relay = parse_received(header)
    assert relay is not None
    assert (relay.ip, relay.rdns, relay.helo) == (ip, rdns, helo)


def test_headers_without_an_address_are_local() -> None:
    assert parse_received(PICKUP) is None
    assert parse_received("from localhost by x with local; date") is None


def test_xforward_client_is_the_relay_and_postfix_header_is_skipped() -> None:
    client = ClientInfo(addr="192.0.2.1", name="mail.sender.test", helo="mail.sender.test")
    origin = find_origin([OUR_MX, INTERNAL], client, LOCAL, ())
    assert origin.source == "xforward"
    assert origin.first_untrusted is not None
    assert origin.first_untrusted.ip == "192.0.2.1"
    assert origin.first_untrusted.by == "mx.ours.test"


def test_trusted_xforward_client_walks_on_into_the_chain() -> None:
    client = ClientInfo(addr="10.0.0.5", name="mx1.ours.test", helo="mx1.ours.test")
    received = [INTERNAL, OUR_MX]
    origin = find_origin(received, client, SITE, ())
    assert origin.first_untrusted is not None
    assert origin.first_untrusted.ip == "192.0.2.1"
    assert origin.first_untrusted.helo == "mail.sender.test"


def test_without_xforward_the_chain_is_walked() -> None:
    origin = find_origin([INTERNAL, OUR_MX], ClientInfo(), SITE, ())
    assert origin.source == "received"
    assert origin.first_untrusted is not None and origin.first_untrusted.ip == "192.0.2.1"
    untrusted_first = find_origin([INTERNAL, OUR_MX], ClientInfo(), LOCAL, ())
    assert untrusted_first.first_untrusted is not None
    assert untrusted_first.first_untrusted.ip == "10.0.0.5"


def test_all_trusted_and_local_submission() -> None:
    local = ClientInfo(addr="127.0.0.1", name="localhost", helo="localhost")
    assert find_origin([PICKUP], local, LOCAL, ()).all_trusted
    assert find_origin([], ClientInfo(), LOCAL, ()).all_trusted
    assert find_origin([], ClientInfo(), LOCAL, ()).source == "none"


def test_authenticated_hop_counts_as_trusted() -> None:
    submission = ("from [198.51.100.50] (unknown [198.51.100.50]) by mx.ours.test (Postfix) "
                  "with ESMTPSA id 9; Mon, 2 Jun 2025")
    client = ClientInfo(addr="198.51.100.50", helo="[198.51.100.50]")
    assert find_origin([submission], client, LOCAL, ()).all_trusted
    assert not find_origin([submission], client, LOCAL, (), trust_authenticated=False
                           ).all_trusted


def test_last_external_relay_with_internal_networks() -> None:
    # 10.0.0.0/8 is trusted (we believe its headers) but not internal (a partner relay)
    origin = find_origin([INTERNAL, OUR_MX], ClientInfo(), SITE, LOCAL)
    assert origin.first_untrusted is not None and origin.first_untrusted.ip == "192.0.2.1"
    assert origin.last_external is not None and origin.last_external.ip == "10.0.0.5"


# -- the whole chain and SpamAssassin's pseudo-headers ---------------------------------

PUBLIC = parse_networks(["127.0.0.0/8", "10.0.0.0/8", "192.168.0.0/16"])
SENDER_SIDE = ("from [192.168.1.5] (helo=laptop) by mail.sender.test with esmtp (Exim 4.96) "
               "id 1tXyZa-000Abc-1x; Mon, 2 Jun 2025 09:59:59 +0000")


@pytest.mark.parametrize("header,expected", [
    (OUR_MX, "[ ip=192.0.2.1 rdns=mail.sender.test helo=mail.sender.test by=mx.ours.test "
             "ident= envfrom= intl=0 id=4AbCd1234 auth= msa=0 ]"),
    # rDNS and HELO keep their case; unknown is no rDNS; a [literal] HELO shows as !..!
    ("from [198.51.100.4] (unknown [198.51.100.4]) by MX.Test (Postfix) with ESMTPSA id 7F3A",
     "[ ip=198.51.100.4 rdns= helo=!198.51.100.4! by=MX.Test ident= envfrom= intl=0 "
     "id=7F3A auth=ESMTPSA msa=0 ]"),
    # Sendmail: IDENT: and "(may be forged)"
    ("from Helo.Example (IDENT:joe@Host.Example [198.51.100.5] (may be forged)) by "
     "mx.test (8.11.6/8.11.6) with ESMTP id g57MJMG21875; Fri, 7 Jun 2002 23:19:22 +0100",
     "[ ip=198.51.100.5 rdns=Host.Example helo=Helo.Example by=mx.test ident=joe "
     "envfrom= intl=0 id=g57MJMG21875 auth= msa=0 ]"),
    # Exim: rDNS first, helo= inside; ident=
    ("from mail.example ([198.51.100.6] helo=other.example ident=bob) by mx.test with "
     "esmtp (Exim 4.96) id 1abcde-000001-Ab", "[ ip=198.51.100.6 rdns=mail.example "
     "helo=other.example by=mx.test ident=bob envfrom= intl=0 id=1abcde-000001-Ab auth= "
     "msa=0 ]"),
    # qmail: rDNS, HELO, ident@ip; envelope-sender
    ("from host.example (HELO hello.example) (joe@198.51.100.8) (envelope-sender "
     "<a@b.example>) by mx.test (qmail-ldap-1.03) with SMTP; 12 Feb 2003 18:23:19 -0000",
     "[ ip=198.51.100.8 rdns=host.example helo=hello.example by=mx.test ident=joe "
     "envfrom=a@b.example intl=0 id= auth= msa=0 ]"),
])
def test_relay_as_string_is_spamassassins_format(header: str, expected: str) -> None:
    relay = parse_received(header)
    assert relay is not None
    assert relay.as_string() == expected


def test_every_untrusted_relay_is_kept_and_marked() -> None:
    chain = find_chain([INTERNAL, OUR_MX, SENDER_SIDE], ClientInfo(), SITE, LOCAL)
    assert [r.ip for r in chain.trusted] == ["10.0.0.5"]
    assert [r.ip for r in chain.untrusted] == ["192.0.2.1", "192.168.1.5"]
    assert [r.ip for r in chain.external] == ["10.0.0.5", "192.0.2.1", "192.168.1.5"]
    headers = pseudo_headers(chain)
    assert headers["X-Spam-Relays-Internal"] == ""
    assert headers["X-Spam-Relays-Trusted"].startswith("[ ip=10.0.0.5 rdns=mx1.ours.test ")
    untrusted = headers["X-Spam-Relays-Untrusted"]
    assert untrusted.count("[ ip=") == 2 and " ] [ ip=192.168.1.5 rdns= helo=laptop " \
        "by=mail.sender.test ident= envfrom= intl=0 id=1tXyZa-000Abc-1x auth= msa=0 ]" \
        in untrusted
    origin = chain.origin()
    assert origin.first_untrusted is not None and origin.first_untrusted.ip == "192.0.2.1"


def test_internal_relays_say_intl_1() -> None:
    chain = find_chain([INTERNAL, OUR_MX], ClientInfo(), SITE, SITE)
    assert pseudo_headers(chain)["X-Spam-Relays-Internal"].startswith(
        "[ ip=10.0.0.5 rdns=mx1.ours.test helo=mx1.ours.test by=mx2.ours.test ident= "
        "envfrom= intl=1 id= auth= msa=0 ]")  # an id needs 3 characters


def test_a_mail_fetcher_restarts_the_trusted_chain() -> None:
    fetched = ("from pop.isp.example [192.0.2.40] by localhost with POP3 (fetchmail-6.4) "
               "for <joe@localhost> (single-drop); Mon, 2 Jun 2025 10:00:02 +0000")
    local = ("from localhost (localhost [127.0.0.1]) by laptop.home (Postfix) with ESMTP "
             "id AB12; Mon, 2 Jun 2025 10:00:03 +0000")
    chain = find_chain([local, fetched, OUR_MX], ClientInfo(), LOCAL, LOCAL)
    assert chain.trusted == []  # the local handover before the fetcher is forgotten
    assert [r.ip for r in chain.untrusted] == ["192.0.2.1"]


def test_xforward_relay_takes_the_postfix_headers_id() -> None:
    client = ClientInfo(addr="192.0.2.1", name="mail.sender.test", helo="mail.sender.test")
    with_header = pseudo_headers(find_chain([OUR_MX], client, LOCAL, ()))
    assert with_header["X-Spam-Relays-Untrusted"] == (
        "[ ip=192.0.2.1 rdns=mail.sender.test helo=mail.sender.test by=mx.ours.test "
        "ident= envfrom= intl=0 id=4AbCd1234 auth= msa=0 ]")
    # without Postfix's header (a milter, or header_checks removed it): XFORWARD only
    alone = pseudo_headers(find_chain([], ClientInfo(addr="192.0.2.1", name="unknown",
                                                     helo="x.example"), LOCAL, ()))
    assert alone["X-Spam-Relays-Untrusted"] == (
        "[ ip=192.0.2.1 rdns= helo=x.example by= ident= envfrom= intl=0 id= auth= msa=0 ]")


def test_originating_ip_is_a_relay_but_not_the_client() -> None:
    ips = originating_ips(["[198.51.100.77]", "unknown"])
    assert ips == ["198.51.100.77"]
    chain = find_chain([INTERNAL], ClientInfo(), SITE, SITE, originating=ips)
    assert [r.ip for r in chain.untrusted] == ["198.51.100.77"]
    assert chain.origin().all_trusted  # a webmail user's address is no SMTP client
    assert pseudo_headers(chain)["X-Spam-Relays-Untrusted"] == (
        "[ ip=198.51.100.77 rdns= helo= by= ident= envfrom= intl=0 id= auth= msa=0 ]")


def test_forged_chain_is_walked_only_to_max_hops() -> None:
    forged = [f"from h{n}.example (h{n}.example [198.51.100.{n % 250 + 1}]) by "
              f"h{n - 1}.example (Postfix) with SMTP id {n}" for n in range(500)]
    chain = find_chain(forged, ClientInfo(), LOCAL, LOCAL)
    assert len(chain.hops) == MAX_HOPS


def test_a_local_submission_ends_the_client_search_but_not_the_chain() -> None:
    """A list server re-submitted the message locally: no client (ALL_TRUSTED), yet the
    relays below stay in X-Spam-Relays-Untrusted as SpamAssassin lists them."""
    resubmitted = ("(from cpunks@localhost) by list.example (8.12.5/8.12.5/Submit) id "
                   "g6NJo6gW050390; Tue, 23 Jul 2002 14:50:06 -0500")
    chain = find_chain([resubmitted, OUR_MX], ClientInfo(), LOCAL, LOCAL)
    assert chain.origin().all_trusted
    assert [r.ip for r in chain.untrusted] == ["192.0.2.1"]


def test_spamassassins_received_indexes() -> None:
    """last_trusted/internal_relay_index count Received headers from the top, the
    ignored ones in the trusted part too (ALL-TRUSTED, ALL-EXTERNAL read them)."""
    chain = find_chain([PICKUP, INTERNAL, OUR_MX, SENDER_SIDE], ClientInfo(), SITE, LOCAL)
    assert (chain.last_trusted_index, chain.last_internal_index) == (1, 0)
    # XFORWARD's own hop (no Postfix header) is no Received header
    client = ClientInfo(addr="10.0.0.9", helo="relay.ours.test")
    chain = find_chain([OUR_MX], client, SITE, SITE)
    assert (chain.last_trusted_index, chain.last_internal_index) == (-1, -1)


def test_the_chain_is_walked_once_per_task_and_networks() -> None:
    """The auth, dnsbl and rules checks share one walk (same networks: same object)."""
    raw = f"Received: {OUR_MX}\r\nSubject: x\r\n\r\nbody\r\n".encode()
    with task_from_bytes(raw) as task:
        first = task_chain(task, LOCAL, LOCAL)
        assert task_chain(task, LOCAL, LOCAL) is first
        assert task_chain(task, SITE, SITE) is not first
        assert len(task.relay_chains) == 2


def test_header_values_read_in_one_pass_as_get_all() -> None:
    """task_chain reads Received and the originating_ip_headers in one pass over the
    fields: the same strings, in the same order, as get_all per name."""
    from scanner.auth.received import ORIGINATING_IP_HEADERS, _values_by_name
    from scanner.pipeline.parse import parse_headers
    raw = (b"Received: from a (a [192.0.2.1])\r\n\tby b; Mon, 2 Jun 2025\r\n"
           b"x-originating-ip: [198.51.100.7]\r\nX-AOL-IP: 203.0.113.9\r\n"
           b"RECEIVED: from c (c [192.0.2.2]) by d\r\nX-Originating-IP: caf\xc3\xa9 10.0.0.1\r\n"
           b"X-SenderIP: \xff 192.0.2.99\r\nSubject: x\r\n\r\nbody\r\n")
    msg = parse_headers(raw)
    names = ("Received", *ORIGINATING_IP_HEADERS)
    expected = [[str(v) for v in msg.get_all(name, [])] for name in names]
    assert _values_by_name(msg, names) == expected
    assert expected[0][1].startswith("from c") and len(expected[2]) == 2
    assert _values_by_name(None, names) == [[] for _ in names]


# -- msa_networks (SpamAssassin's Conf.pm and Message/Metadata/Received.pm) -----------

MSA_CHAIN = [
    "from mx1.ours.test (mx1.ours.test [10.0.0.5]) by mx2.ours.test (Postfix) with ESMTP "
    "id 1AB; Mon, 2 Jun 2025 10:00:01 +0000",
    "from msa.ours.test (msa.ours.test [10.0.0.9]) by mx1.ours.test (Postfix) with ESMTP "
    "id 3EF; Mon, 2 Jun 2025 10:00:00 +0000",
    "from laptop.home.test (dsl.isp.test [192.0.2.50]) by msa.ours.test (Postfix) with "
    "ESMTP id 2CD; Mon, 2 Jun 2025 10:00:00 +0000"]
MX1, MSA, LAPTOP, WEBMAIL = (
    "[ ip=10.0.0.5 rdns=mx1.ours.test helo=mx1.ours.test by=mx2.ours.test ident= envfrom= "
    "intl=1 id=1AB auth= msa=0 ]",
    "[ ip=10.0.0.9 rdns=msa.ours.test helo=msa.ours.test by=mx1.ours.test ident= envfrom= "
    "intl=0 id=3EF auth= msa={} ]",
    "[ ip=192.0.2.50 rdns=dsl.isp.test helo=laptop.home.test by=msa.ours.test ident= "
    "envfrom= intl=0 id=2CD auth= msa=0 ]",
    "[ ip=198.51.100.77 rdns= helo= by= ident= envfrom= intl=0 id= auth= msa=0 ]")
TEN, MX1_ONLY = parse_networks(["10.0.0.0/8"]), parse_networks(["10.0.0.5/32"])


def test_hops_below_an_msa_keep_its_trust() -> None:
    """SpamAssassin 4.0.1 with trusted_networks 10.0.0.0/8, internal_networks 10.0.0.5,
    msa_networks 10.0.0.9 and originating_ip_headers X-Originating-IP gives these four
    values (checked with Mail::SpamAssassin on this machine): the MSA is marked msa=1,
    the user's hop and the webmail address below it stay trusted and external."""
    chain = find_chain(MSA_CHAIN, ClientInfo(), TEN, MX1_ONLY, originating=["198.51.100.77"],
                       msa=parse_networks(["10.0.0.9"]))
    assert pseudo_headers(chain) == {
        "X-Spam-Relays-Trusted": " ".join([MX1, MSA.format(1), LAPTOP, WEBMAIL]),
        "X-Spam-Relays-Untrusted": "",
        "X-Spam-Relays-Internal": MX1,
        "X-Spam-Relays-External": " ".join([MSA.format(1), LAPTOP, WEBMAIL])}
    assert chain.origin().all_trusted  # no SPF or DNSBL look-up of our own user
    without = find_chain(MSA_CHAIN, ClientInfo(), TEN, MX1_ONLY)
    assert without.origin().first_untrusted.ip == "192.0.2.50"  # type: ignore[union-attr]


def test_an_msa_outside_trusted_networks_is_no_msa() -> None:
    """SpamAssassin's lint drops an msa_networks entry outside trusted_networks (same
    check with trusted_networks 10.0.0.5: the MSA's hop is simply untrusted)."""
    chain = find_chain(MSA_CHAIN, ClientInfo(), MX1_ONLY, MX1_ONLY,
                       originating=["198.51.100.77"], msa=parse_networks(["10.0.0.9"]))
    assert pseudo_headers(chain)["X-Spam-Relays-Untrusted"] == " ".join(
        [MSA.format(0), LAPTOP, WEBMAIL])


def test_an_internal_msa_makes_the_hops_below_it_internal() -> None:
    """As SpamAssassin's msa_networks documentation says: below an MSA that is trusted
    and internal, every relay is trusted and internal (intl=1)."""
    chain = find_chain(MSA_CHAIN, ClientInfo(), TEN, TEN, msa=parse_networks(["10.0.0.9"]))
    assert [(h.relay.ip, h.trusted, h.internal, h.msa) for h in chain.hops] == [
        ("10.0.0.5", True, True, False), ("10.0.0.9", True, True, True),
        ("192.0.2.50", True, True, False)]


def test_msa_networks_is_a_setting_of_every_chain_reader() -> None:
    """auth, dnsbl and rules read msa_networks as they read trusted_networks."""
    from scanner.checks.auth import Auth
    from scanner.checks.dnsbl import Dnsbl
    from scanner.checks.rules import RulesSettings, relay_networks
    from scanner.config import loads
    from tests.auth.conftest import make_check
    for cls in (Auth, Dnsbl):
        check = make_check(cls, {"msa_networks": ["10.0.0.9"]})
        assert check._nets.msa == parse_networks(["10.0.0.9"])
    config = loads("")
    nets = relay_networks(RulesSettings(msa_networks=("10.0.0.9",)), config)
    assert nets.msa == parse_networks(["10.0.0.9"])


# -- formats and unparseable headers, as SpamAssassin 4.0.1's parse_received_line ------
# (each expected value is what Mail::SpamAssassin::Message::Metadata's
# parse_received_line gave for the same line on this machine)

@pytest.mark.parametrize("header,expected", [
    # Yahoo's authenticated SMTP after a qmail-style HELO
    ("from p256.as1.cra.dublin.eircom.net (HELO mfrenchw2k) (mfrench42@159.134.177.0 with "
     "login) by smtp.mail.vip.sc5.yahoo.com with SMTP; 19 Jul 2002 21:03:45 -0000",
     "[ ip=159.134.177.0 rdns=p256.as1.cra.dublin.eircom.net helo=mfrenchw2k "
     "by=smtp.mail.vip.sc5.yahoo.com ident=mfrench42 envfrom= intl=0 id= auth= msa=0 ]"),
    # TIS smap
    ("from unknown(10.0.0.13) by gw.educ.irlgov.ie via smap (V2.0) id xma027225",
     "[ ip=10.0.0.13 rdns= helo= by=gw.educ.irlgov.ie ident= envfrom= intl=0 "
     "id=xma027225 auth= msa=0 ]"),
    # no known format: the first word is the HELO name, the bracketed address the client
    ("from www.emuse.ie (hassle.emuse.ie) [193.120.145.154] by relay01.esat.net with esmtp "
     "id 17aYOZ-0004tY-00", "[ ip=193.120.145.154 rdns= helo=www.emuse.ie "
     "by=relay01.esat.net ident= envfrom= intl=0 id=17aYOZ-0004tY-00 auth= msa=0 ]"),
    # CommuniGate's authentication marker
    ("from [10.5.1.119] (account kguest HELO tuatha.org) by stockbyte.com (CommuniGate Pro "
     "SMTP 3.5.9) with ESMTP id 53327", "[ ip=10.5.1.119 rdns= helo=tuatha.org "
     "by=stockbyte.com ident= envfrom= intl=0 id=53327 auth=Communigate msa=0 ]"),
    # webmail: no HELO
    ("from 194.125.220.16 ( [194.125.220.16]) as user rcunniff@mail.boxhost.net by "
     "webmail.gameshrine.com with HTTP", "[ ip=194.125.220.16 rdns= helo= "
     "by=webmail.gameshrine.com ident= envfrom= intl=0 id= auth=HTTP msa=0 ]"),
])
def test_formats_read_as_spamassassin_reads_them(header: str, expected: str) -> None:
    relay = parse_received(header)
    assert relay is not None and relay is not UNPARSEABLE
    assert relay.as_string() == expected


@pytest.mark.parametrize("header,result", [
    ("from mail.example (mail.example) by relay.example (SMTP) id ABC123", UNPARSEABLE),
    ("from andira.wanadoo.fr (193.252.19.152) by caroubier.wanadoo.fr; "
     "28 Jul 2001 15:59:31 +0200", UNPARSEABLE),
    ("from [192.0.2.8] (helo=x)", UNPARSEABLE),  # no "by"
    # skipped on purpose by SpamAssassin: a handover that logs no address
    ("from hdc1 by [63.111.238.7] via smtpd (for [193.120.211.219]) with SMTP", None),
    (PICKUP, None),
])
def test_unparseable_and_skipped_headers(header: str, result: object) -> None:
    assert parse_received(header) is result


def test_an_unparseable_header_is_counted_and_walked_past() -> None:
    """SpamAssassin skips an unparseable header and judges the next relay by its
    address (checked with Mail::SpamAssassin: Untrusted holds 192.0.2.7, unparseable
    1); it is no local submission, so the message is not all trusted."""
    received = [
        "from localhost (localhost [127.0.0.1]) by mx.ours.test (Postfix) with ESMTP id 4AbC",
        "from mail.example (mail.example) by relay.example (SMTP) id ABC123",
        "from h.example (h.example [192.0.2.7]) by mail.example (Postfix) with ESMTP id 7DE"]
    chain = find_chain(received, ClientInfo(), LOCAL, LOCAL)
    assert chain.unparseable == 1
    assert pseudo_headers(chain)["X-Spam-Relays-Untrusted"] == (
        "[ ip=192.0.2.7 rdns=h.example helo=h.example by=mail.example ident= envfrom= "
        "intl=0 id=7DE auth= msa=0 ]")
    origin = chain.origin()
    assert origin.first_untrusted is not None and origin.first_untrusted.ip == "192.0.2.7"
    assert (chain.last_trusted_index, chain.last_internal_index) == (1, 1)

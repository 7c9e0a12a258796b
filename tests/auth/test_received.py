"""The client from XFORWARD or the Received chain, with trusted and internal networks."""

from __future__ import annotations

import pytest

from scanner.auth.received import find_origin, parse_received
from scanner.dns.blocked import parse_networks
from scanner.task import ClientInfo

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
     "with Microsoft SMTP Server id 15.1", "198.51.100.20", "", "EX01.corp.example"),
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

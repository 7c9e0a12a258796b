"""The DNS client against a scripted responder (:mod:`tests.auth.fake_dns`): answers a
real server does not give. RFC 5452 section 9.1 / SpamAssassin's DnsResolver: a datagram
that does not answer our question is dropped and the wait goes on."""

from __future__ import annotations

import dns.flags
import dns.rcode
import pytest

from scanner.dns import Deadline, DnsClient, Status
from tests.auth.conftest import run, scripted_client
from tests.auth.fake_dns import FakeResolver, answer

NAME = "2.0.0.127.bl.example"


pytestmark = pytest.mark.usefixtures("both_udp_transports")


def client_for(fake: FakeResolver, timeout: float = 1.0) -> DnsClient:
    return scripted_client(fake.port, timeout)


def with_other_id(wire: bytes) -> bytes:
    return bytes([wire[0] ^ 0x55, wire[1]]) + wire[2:]


def test_datagrams_that_do_not_answer_the_question_are_ignored() -> None:
    """A late answer to another name with our id, one with another id, garbage with our
    id and our own query echoed back come first; the real answer after them counts."""
    def script(wire: bytes) -> list[bytes]:
        return [answer(wire, rcode=dns.rcode.NXDOMAIN, name="1.0.0.127.bl.example"),
                with_other_id(answer(wire, "127.0.0.9")),
                wire[:2] + b"\x81\x80garbage",
                wire,
                answer(wire, "127.0.0.2")]

    with FakeResolver(script) as fake:
        got = run(client_for(fake).query(NAME, "A", Deadline(3)))
    assert got.status is Status.OK and got.addresses() == ["127.0.0.2"]


def test_only_foreign_answers_is_a_timeout_not_an_answer() -> None:
    with FakeResolver(lambda w: [answer(w, "127.0.0.2", name="other.example")]) as fake:
        got = run(client_for(fake, timeout=0.3).query(NAME, "A", Deadline(3)))
    assert got.status is Status.TIMEOUT


def test_question_echo_in_other_letter_case_is_an_answer() -> None:
    with FakeResolver(lambda w: [answer(w, "127.0.0.4", name=NAME.upper())]) as fake:
        got = run(client_for(fake).query(NAME, "A", Deadline(3)))
    assert got.status is Status.OK and got.addresses() == ["127.0.0.4"]


def test_error_reply_without_a_question_fails_fast() -> None:
    """FORMERR/SERVFAIL may come without the question (RFC 1035): still our reply."""
    def script(wire: bytes) -> list[bytes]:
        return [wire[:2] + bytes([0x81, 0x82]) + bytes(8)]  # SERVFAIL, no sections

    with FakeResolver(script) as fake:
        got = run(client_for(fake, timeout=2.0).query(NAME, "A", Deadline(3)))
    assert got.status is Status.ERROR


def test_truncated_answer_without_tcp_is_a_failure_not_the_partial_answer() -> None:
    with FakeResolver(lambda w: [answer(w, "127.0.0.2", flags=dns.flags.TC)]) as fake:
        got = run(client_for(fake).query(NAME, "A", Deadline(3)))
    assert got.status is Status.ERROR and got.temporary


def test_list_test_points_are_asked_once_per_interval() -> None:
    """RFC 5782 test points (127.0.0.1 reversed, ::FFFF:7F00:1 in nibbles, INVALID) are
    asked at most once per PROBE_INTERVAL per list; a timeout is not remembered."""
    import logging

    from scanner.dns.health import ListHealth, probe_name
    from scanner.dns.lists import build_codemap

    assert probe_name("bl.example", "ipv4") == "1.0.0.127.bl.example"
    assert probe_name("bl.example", "ipv6").startswith("1.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.")
    assert probe_name("bl.example", "domain") == "invalid.bl.example"
    codes = build_codemap("bl.example", "RCVD_IN_X", {}, {}, ["127.255.255.0/24"], "k", "s")
    now = [0.0]
    with FakeResolver(lambda w: [answer(w, "127.0.0.2")]) as fake:
        health = ListHealth(client_for(fake), logging.getLogger("t"), "DNSBL",
                            interval=300.0, clock=lambda: now[0])
        first = run(health.wildcarding(codes, "ipv4", Deadline(3)))
        again = run(health.wildcarding(codes, "ipv4", Deadline(3)))
        asked_once = len(fake.queries)
        now[0] = 301.0
        later = run(health.wildcarding(codes, "ipv4", Deadline(3)))
        asked = len(fake.queries)
    assert first and again and later
    assert (asked_once, asked) == (1, 2)


def test_lookups_with_probes_ask_only_the_due_test_points() -> None:
    """with_lookups gives the lookups' answers and one wildcarding answer per probe, in
    order; a test point believed is not asked, one due (or due again) is
    asked alongside the lookups."""
    import logging

    from scanner.dns.health import ListHealth
    from scanner.dns.lists import build_codemap

    dead = build_codemap("bl.example", "RCVD_IN_X", {}, {}, ["127.255.255.0/24"], "k", "s")
    other = build_codemap("ok.example", "RCVD_IN_Y", {}, {}, ["127.255.255.0/24"], "k", "s")
    now = [0.0]

    async def lookups() -> list[str]:
        return ["a", "b"]

    with FakeResolver(lambda w: [answer(w, "127.0.0.2") if b"\x02bl\x07example" in w
                                 else answer(w)]) as fake:
        health = ListHealth(client_for(fake), logging.getLogger("t"), "DNSBL",
                            interval=300.0, clock=lambda: now[0])
        probes = [(dead, "ipv4"), (other, "ipv4")]
        first = run(health.with_lookups(lookups(), probes, Deadline(3)))
        asked_first = len(fake.queries)
        again = run(health.with_lookups(lookups(), probes, Deadline(3)))
        asked_again = len(fake.queries)
        now[0] = 301.0
        later = run(health.with_lookups(lookups(), probes[1:], Deadline(3)))
        asked_later = len(fake.queries)
    assert first == again == (["a", "b"], [True, False])
    assert later == (["a", "b"], [False])
    assert (asked_first, asked_again, asked_later) == (2, 2, 3)


def test_a_slow_truncated_answer_and_a_silent_tcp_stay_within_the_query_timeout() -> None:
    """The TCP retry after a truncated UDP answer gets what is left of the query's
    time, not the whole of it again (0.5 s of UDP + 1 s of TCP before)."""
    import time

    with FakeResolver(lambda w: [answer(w, "127.0.0.2", flags=dns.flags.TC)],
                      delay=0.5, silent_tcp=True) as fake:
        began = time.monotonic()
        got = run(client_for(fake, timeout=1.0).query(NAME, "A", Deadline(5)))
        spent = time.monotonic() - began
    assert got.temporary
    assert spent < 1.3, f"{spent:.2f} s for a 1 s query timeout"

"""The DNS client against scripted servers: a server that does not understand EDNS0
(RFC 6891 section 7: FORMERR, NOTIMP or BADVERS, then asked again without OPT),
answers forged from another address or port (RFC 5452: ignored), and SERVFAIL,
NXDOMAIN and NODATA reaching SPF as temperror, none and none (RFC 7208 section 4.3/5)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import pytest

from scanner.auth.spf import SpfChecker
from scanner.dns import Deadline, DnsClient, Status
from tests.auth.conftest import run, scripted_client
from tests.auth.fake_dns import FakeResolver, answer

NAME = "2.0.0.127.bl.example"


pytestmark = pytest.mark.usefixtures("both_udp_transports")


def client_for(fake: FakeResolver, timeout: float = 1.0) -> DnsClient:
    return scripted_client(fake.port, timeout)


def has_opt(wire: bytes) -> bool:
    return dns.message.from_wire(wire).edns >= 0


def edns_intolerant(rcode: int):
    """A server of before EDNS0: ``rcode`` to a query with OPT, a proper answer
    without it."""
    def script(wire: bytes) -> list[bytes]:
        if not has_opt(wire):
            return [answer(wire, "127.0.0.2")]
        response = dns.message.make_response(dns.message.from_wire(wire))
        if rcode != dns.rcode.BADVERS:  # BADVERS is an extended rcode: it needs OPT
            response.use_edns(False)
        response.set_rcode(rcode)
        return [response.to_wire()]
    return script


@pytest.mark.parametrize("rcode", [dns.rcode.FORMERR, dns.rcode.NOTIMP, dns.rcode.BADVERS])
@pytest.mark.parametrize("name", [NAME, "bücher.example"])  # our packet, dnspython's
def test_a_server_without_edns_is_asked_again_without_it(rcode: int, name: str) -> None:
    with FakeResolver(edns_intolerant(rcode)) as fake:
        got = run(client_for(fake).query(name, "A", Deadline(3)))
        asked = list(fake.queries)
    assert got.status is Status.OK and got.addresses() == ["127.0.0.2"]
    assert [has_opt(q) for q in asked] == [True, False]
    first, second = (dns.message.from_wire(q) for q in asked)
    assert second.question == first.question and second.flags == first.flags


def test_a_server_without_edns_is_asked_without_it_for_a_while(monkeypatch) -> None:
    """After one FORMERR to EDNS0 and a good plain answer, the next queries to that
    server go without OPT (no extra round trip each); after NO_EDNS_MEMORY, EDNS0 is
    tried again."""
    import scanner.dns.client as client_module

    with FakeResolver(edns_intolerant(dns.rcode.FORMERR)) as fake:
        client = client_for(fake)
        for name in (NAME, "3.0.0.127.bl.example"):
            assert run(client.query(name, "A", Deadline(3))).status is Status.OK
        assert [has_opt(q) for q in fake.queries] == [True, False, False]
        monkeypatch.setattr(client_module, "NO_EDNS_MEMORY", 0.0)
        client._no_edns.clear()
        for name in ("4.0.0.127.bl.example", "5.0.0.127.bl.example"):
            assert run(client.query(name, "A", Deadline(3))).status is Status.OK
        assert [has_opt(q) for q in fake.queries][3:] == [True, False, True, False]


def test_formerr_without_edns_too_is_a_failure_not_a_loop() -> None:
    with FakeResolver(lambda w: [answer(w, rcode=dns.rcode.FORMERR)]) as fake:
        got = run(client_for(fake).query(NAME, "A", Deadline(3)))
        asked = len(fake.queries)
    assert got.status is Status.ERROR and got.temporary
    assert asked == 2


@pytest.mark.parametrize("forge_from", ["127.0.0.1", "127.0.0.2"])  # other port, address
def test_answers_from_another_source_are_ignored(forge_from: str) -> None:
    """The forged answer (our id, our question) arrives first; the server's counts."""
    with FakeResolver(lambda w: [answer(w, "127.0.0.2")], forge_from=forge_from,
                      forged=lambda w: [answer(w, "127.0.0.66")]) as fake:
        got = run(client_for(fake).query(NAME, "A", Deadline(3)))
    assert got.status is Status.OK and got.addresses() == ["127.0.0.2"]


def by_name(wire: bytes) -> list[bytes]:
    """SERVFAIL, NXDOMAIN or NODATA (NOERROR, nothing) as the name's first label says."""
    label = dns.message.from_wire(wire).question[0].name.labels[0].decode()
    rcode = {"servfail": dns.rcode.SERVFAIL, "nx": dns.rcode.NXDOMAIN}.get(
        label, dns.rcode.NOERROR)
    return [answer(wire, rcode=rcode)]


def test_servfail_nxdomain_and_nodata_reach_spf_as_temperror_none_none() -> None:
    with FakeResolver(by_name) as fake:
        client = client_for(fake)

        async def lookup(name: str, rdtype: str):
            return await client.query(name, rdtype, Deadline(3))

        async def go() -> list:
            spf = SpfChecker(lookup, "mx.test")
            statuses = [(await lookup(f"{n}.example", "TXT")).status
                        for n in ("servfail", "nx", "nodata")]
            results = [(await spf.check_host("192.0.2.1", f"{n}.example",
                                              f"u@{n}.example", "helo.test")).result
                       for n in ("servfail", "nx", "nodata")]
            return statuses + results

        got = run(go())
    assert got == [Status.ERROR, Status.NXDOMAIN, Status.NODATA,
                   "temperror", "none", "none"]


def truncated_without_opt(wire: bytes) -> list[bytes]:
    """TC and no OPT, whatever the query: EDNS0 ignored, 512 bytes too few."""
    response = dns.message.make_response(dns.message.from_wire(wire))
    response.use_edns(False)
    response.flags |= dns.flags.TC
    return [response.to_wire()]


def formerr_to_opt_else_truncated(wire: bytes) -> list[bytes]:
    if has_opt(wire):
        return edns_intolerant(dns.rcode.FORMERR)(wire)
    return truncated_without_opt(wire)


@pytest.mark.parametrize("udp, udp_asked, tcp_asked", [
    (formerr_to_opt_else_truncated, [True, False], [False]),
    (truncated_without_opt, [True, False], [True, False]),
], ids=["formerr-then-tc", "tc-then-formerr-over-tcp"])
def test_a_long_answer_from_a_server_without_edns_comes_over_tcp_without_it(
        udp, udp_asked: list[bool], tcp_asked: list[bool]) -> None:
    """A server of before EDNS0 whose answer does not fit in 512 bytes: FORMERR to the
    OPT query (over UDP, or over TCP after a truncated UDP answer without OPT); without
    OPT, TC over UDP and the answer over TCP."""
    with FakeResolver(udp, tcp_script=edns_intolerant(dns.rcode.FORMERR)) as fake:
        got = run(client_for(fake).query(NAME, "A", Deadline(3)))
        asked = [has_opt(q) for q in fake.queries], [has_opt(q) for q in fake.tcp_queries]
    assert got.status is Status.OK and got.addresses() == ["127.0.0.2"]
    assert asked == (udp_asked, tcp_asked)

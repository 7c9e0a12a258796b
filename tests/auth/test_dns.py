"""The DNS layer against a real NSD: statuses, timeouts, budget, cache, resolver syntax,
blocked-answer detection."""

from __future__ import annotations

import time

import pytest

from scanner.dns import Deadline, DnsSettings, Status, get_client
from scanner.dns.blocked import DEFAULT_BLOCKED, parse_networks, sort_answer
from scanner.dns.cache import AnswerCache
from scanner.dns.reverse import list_query, reversed_ip, unmapped
from scanner.dns.settings import parse_resolver
from scanner.errors import ConfigError
from scanner.testing.dns_server import DnsServer, zone_text
from tests.auth.conftest import run


def test_answers_have_a_status(dns_settings: DnsSettings) -> None:
    client = get_client(dns_settings)

    async def go() -> list:
        d = Deadline(5)
        return [await client.query("ip4.spf.test", "TXT", d),
                await client.query("nothing.spf.test", "TXT", d),
                await client.query("mail1.spf.test", "TXT", d),
                await client.query("outside.invalid", "A", d),
                await client.query("mx.spf.test", "MX", d),
                await client.query("40.2.0.192.in-addr.arpa", "PTR", d)]

    ok, nx, nodata, refused, mx, ptr = run(go())
    assert ok.status is Status.OK and ok.texts() == ["v=spf1 ip4:192.0.2.1 -all"]
    assert nx.status is Status.NXDOMAIN and nx.void and not nx.temporary
    assert nodata.status is Status.NODATA and nodata.void
    assert refused.status is Status.ERROR and refused.temporary
    assert sorted(mx.names()) == ["mail1.spf.test", "mail2.spf.test"]
    assert ptr.names() == ["host40.ptr.spf.test"]


def test_timeout_is_bounded_by_query_timeout_and_budget(black_hole) -> None:
    client = get_client(DnsSettings(resolvers=(black_hole.resolver,), timeout=0.3,
                                    budget=1.0, cache_size=0))

    async def go() -> tuple:
        began = time.monotonic()
        first = await client.query("a.example", "A", Deadline(5))
        one = time.monotonic() - began
        began = time.monotonic()
        spent = Deadline(0.1)
        second = await client.query("b.example", "A", spent)
        third = await client.query("c.example", "A", spent)
        return first, one, second, third, time.monotonic() - began

    first, one, second, third, two = run(go())
    assert first.status is Status.TIMEOUT and 0.25 < one < 1.0
    assert second.status is Status.TIMEOUT and third.status is Status.TIMEOUT
    assert two < 0.5  # the budget ran out: the third query did not wait at all


def test_cache_answers_after_the_server_is_gone() -> None:
    server = DnsServer({"cache.test": zone_text("cache.test", 'x TXT "hello"\n')})
    server.start()
    client = get_client(DnsSettings(resolvers=(server.resolver,), timeout=0.5,
                                    cache_size=100))
    try:
        first = run(client.query("x.cache.test", "TXT", Deadline(2)))
        missing = run(client.query("y.cache.test", "TXT", Deadline(2)))
    finally:
        server.stop()
    again = run(client.query("x.cache.test", "TXT", Deadline(2)))
    missing_again = run(client.query("y.cache.test", "TXT", Deadline(2)))
    assert first.texts() == again.texts() == ["hello"]
    assert missing.status is missing_again.status is Status.NXDOMAIN  # negative caching


def test_cache_honours_ttls_and_types() -> None:
    """Positive answers for their TTL, NXDOMAIN for every type, NODATA for its own type;
    nothing with TTL 0 and no negative answer when the SOA's minimum is 0."""
    kept = DnsServer({
        "kept.test": zone_text("kept.test", 'x TXT "hello"\nz 0 TXT "fleeting"\n',
                               negative_ttl=30),
        "unkept.test": zone_text("unkept.test", 'x TXT "hi"\n', negative_ttl=0)})
    kept.start()
    client = get_client(DnsSettings(resolvers=(kept.resolver,), timeout=0.3, budget=2.0,
                                    cache_size=100))
    names = [("X.kept.test.", "TXT"), ("x.kept.test", "A"), ("y.kept.test", "TXT"),
             ("z.kept.test", "TXT"), ("nope.unkept.test", "TXT")]
    try:
        before = [run(client.query(n, t, Deadline(2))) for n, t in names]
    finally:
        kept.stop()
    after = [run(client.query(n, t, Deadline(2))) for n, t in names]
    after_other_type = run(client.query("y.kept.test", "MX", Deadline(2)))
    uncached_type = run(client.query("x.kept.test", "MX", Deadline(2)))
    assert [a.status for a in before] == [Status.OK, Status.NODATA, Status.NXDOMAIN,
                                          Status.OK, Status.NXDOMAIN]
    assert after[:3] == before[:3]  # same answers, from the cache (the server is gone)
    assert after[0].texts() == ["hello"]
    assert after_other_type.status is Status.NXDOMAIN  # the name does not exist at all
    assert uncached_type.temporary  # NODATA for A says nothing about MX
    assert after[3].temporary and after[4].temporary  # TTL 0 and SOA minimum 0


def test_answer_cache_expiry_and_bound() -> None:
    now = [100.0]
    cache = AnswerCache(2, clock=lambda: now[0])
    cache.put("a", "A", "one", 10)
    cache.put("b", "A", "two", 5)
    assert cache.get("a", "A") == "one" and cache.get("b", "TXT") is None
    now[0] = 106.0
    assert cache.get("b", "A") is None and cache.get("a", "A") == "one"
    cache.put("c", "A", "three", 10)
    cache.put("d", "A", "four", 10)  # over the bound: the oldest entry goes
    assert len(cache) == 2 and cache.get("a", "A") is None
    assert cache.get("d", "A") == "four"
    cache.put("e", "A", "never", 0)
    assert cache.get("e", "A") is None
    assert AnswerCache(0).get("x", "A") is None


def test_clients_are_shared_per_configuration(dns_settings: DnsSettings) -> None:
    assert get_client(dns_settings) is get_client(dns_settings)


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1", ("127.0.0.1", 53)),
    ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("::1", ("::1", 53)),
    ("[2001:db8::1]:5300", ("2001:db8::1", 5300)),
])
def test_resolver_syntax(text: str, expected: tuple[str, int]) -> None:
    assert parse_resolver(text) == expected


@pytest.mark.parametrize("bad", ["localhost", "127.0.0.1:0", "[::1", "1.2.3.4:x"])
def test_bad_resolver_names_the_key(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"checks.settings.auth.dns.resolvers\[0\]"):
        get_client(DnsSettings(resolvers=(bad,)), "checks.settings.auth.dns", "x.toml")


def test_blocked_answers_are_never_listings() -> None:
    nets = parse_networks(DEFAULT_BLOCKED)
    sorted_ = sort_answer(["127.0.0.2", "127.255.255.254", "203.0.113.5", "127.0.0.10"],
                          nets)
    assert sorted_.listed == ("127.0.0.2", "127.0.0.10")
    assert sorted_.blocked == ("127.255.255.254", "203.0.113.5")


def test_reversed_names() -> None:
    assert reversed_ip("192.0.2.1") == "1.2.0.192"
    assert list_query("2001:db8::1", "bl.test.").startswith("1.0.0.0.0.0.0.0.")
    assert list_query("2001:db8::1", "bl.test").endswith(".8.b.d.0.1.0.0.2.bl.test")
    assert unmapped("::ffff:192.0.2.1") == "192.0.2.1"


def test_a_truncated_answer_is_fetched_over_tcp_and_resolvers_fail_over() -> None:
    """A TXT answer larger than our EDNS size (1,232 bytes) comes back truncated over
    UDP and is asked again over TCP; a resolver that refuses the name is left for the
    next one."""
    big = " ".join(f'"{n:03d}{"x" * 60}"' for n in range(40))  # 40 strings, ~2.6 KB
    server = DnsServer({"big.test": zone_text("big.test", f"t TXT {big}\n")})
    other = DnsServer({"other.test": zone_text("other.test", 'x TXT "y"\n')})
    server.start()
    other.start()
    try:
        client = get_client(DnsSettings(resolvers=(other.resolver, server.resolver),
                                        timeout=2.0, cache_size=0))
        answer = run(client.query("t.big.test", "TXT", Deadline(5)))
    finally:
        server.stop()
        other.stop()
    assert answer.status is Status.OK
    text = answer.texts()[0]
    assert len(text) == 40 * 63 and text.startswith("000x") and "039x" in text


def test_quick_nxdomain_reads_only_a_plain_answer_to_our_question() -> None:
    import asyncio

    import dns.message

    from scanner.dns.stub import quick_nxdomain, udp_exchange

    server = DnsServer({"neg.test": zone_text("neg.test", 'x TXT "y"\n', ttl=300,
                                              negative_ttl=42)})
    server.start()
    host, port = server.resolver.rsplit(":", 1)

    async def ask(name: str, rdtype: str = "A") -> tuple[bytes, bytes]:
        wire = dns.message.make_query(name, rdtype, use_edns=0, payload=1232).to_wire()
        reply = await udp_exchange(wire, (host, int(port)), 2.0)
        assert reply is not None
        return wire, reply

    try:
        query, reply = asyncio.run(ask("nope.neg.test"))
        positive_query, positive = asyncio.run(ask("x.neg.test", "TXT"))
        nodata_query, nodata = asyncio.run(ask("x.neg.test", "MX"))
    finally:
        server.stop()
    assert quick_nxdomain(query, reply) == 42.0  # min(SOA TTL 300, MINIMUM 42)
    assert quick_nxdomain(positive_query, positive) is None  # records: dnspython's job
    assert quick_nxdomain(nodata_query, nodata) is None  # NOERROR
    other_id = bytes([query[0] ^ 1]) + query[1:]
    assert quick_nxdomain(other_id, reply) is None
    other_question = query.replace(b"\x04nope", b"\x04nopf")
    assert quick_nxdomain(other_question, reply) is None
    assert quick_nxdomain(query, reply.replace(b"\x04nope", b"\x04NoPe")) == 42.0  # any case
    other_type = query.replace(b"\x04test\x00\x00\x01", b"\x04test\x00\x00\x1c")  # AAAA
    assert other_type != query and quick_nxdomain(other_type, reply) is None
    for cut in (3, 11, 20, len(reply) - 16):  # the header, the question, the SOA (not
        assert quick_nxdomain(query, reply[:cut]) is None  # the OPT record after it)
    truncated = reply[:2] + bytes([reply[2] | 0x02]) + reply[3:]
    assert quick_nxdomain(query, truncated) is None


@pytest.mark.parametrize("name,rdtype", [
    ("2.0.0.127.zen.example.org", "A"), ("example.com.", "TXT"), ("_dmarc.Example.COM", "TXT"),
    ("a" * 63 + ".com", "MX"), ("sel._domainkey.mail.example", "TXT"),
    (".".join("0123456789abcdef0123456789abcdef") + ".ip6.arpa", "PTR"),
    ("_spf.x-y.example", "AAAA")])
def test_query_packets_are_the_bytes_dnspython_writes(name: str, rdtype: str) -> None:
    import dns.message
    import dns.rdatatype

    from scanner.dns.stub import build_query

    theirs = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
    ours = build_query(name, dns.rdatatype.from_text(rdtype), theirs.id)
    assert ours == theirs.to_wire()
    fresh = [build_query(name, 1) for _ in range(8)]
    assert len({q[:2] for q in fresh if q}) > 1  # the id is random per query


@pytest.mark.parametrize("name", ["a..b", "a" * 64 + ".com", "bücher.example", "a\\.b.example",
                                  ".".join(["a" * 63] * 4)])
def test_unusual_names_are_left_to_dnspython(name: str) -> None:
    from scanner.dns.client import _query_wire
    from scanner.dns.stub import build_query

    assert build_query(name, 1) is None
    wire = _query_wire(name, "A")
    if name == "bücher.example":  # IDNA: dnspython writes its A-label
        assert wire is not None and b"xn--bcher-kva" in wire
    elif name == "a\\.b.example":  # an escaped dot inside one label
        assert wire is not None and b"\x03a.b\x07example" in wire
    else:  # invalid: the client answers NXDOMAIN without asking
        assert wire is None


def test_invalid_names_are_nxdomain_without_a_query(dns_settings: DnsSettings) -> None:
    client = get_client(dns_settings)
    answer = run(client.query("a" * 64 + ".example", "A", Deadline(5)))
    assert answer.status is Status.NXDOMAIN


def test_cname_chains_are_followed_and_kept_for_their_shortest_ttl() -> None:
    """A CNAME chain ending in several A records (a listing code set) gives them all,
    cached for the lowest TTL on the chain; a dangling CNAME is NXDOMAIN (RFC 6604) and
    a CNAME loop a server failure, never a crash."""
    now = [1000.0]
    server = DnsServer({"chain.test": zone_text("chain.test", """
a 300 CNAME b
b 60 CNAME c
c 30 A 127.0.0.2
c 30 A 127.0.0.4
dangling CNAME nowhere
loop1 CNAME loop2
loop2 CNAME loop1
""")})
    server.start()
    try:
        client = get_client(DnsSettings(resolvers=(server.resolver,), timeout=1.0,
                                        cache_size=10))
        client._cache._clock = lambda: now[0]
        chained = run(client.query("a.chain.test", "A", Deadline(3)))
        dangling = run(client.query("dangling.chain.test", "A", Deadline(3)))
        loop = run(client.query("loop1.chain.test", "A", Deadline(3)))
    finally:
        server.stop()
    now[0] += 29
    kept = run(client.query("a.chain.test", "A", Deadline(3)))
    now[0] += 2
    expired = run(client.query("a.chain.test", "A", Deadline(3)))
    assert chained.status is Status.OK
    assert sorted(chained.addresses()) == ["127.0.0.2", "127.0.0.4"]
    assert dangling.status is Status.NXDOMAIN
    assert loop.status is Status.ERROR and loop.temporary
    assert kept == chained  # from the cache: the server is gone
    assert expired.temporary  # 30 s, the A records' TTL, are over


def test_long_ttls_are_capped_as_a_local_resolver_caps_them() -> None:
    """A 30-day TTL is kept one day (MAX_TTL), a 7-day negative TTL one hour
    (MAX_NEGATIVE_TTL): a list's new listing must not stay unseen for a week."""
    now = [1000.0]
    server = DnsServer({"long.test": zone_text("long.test", 'x TXT "hello"\n',
                                               ttl=30 * 86400, negative_ttl=7 * 86400)})
    server.start()
    client = get_client(DnsSettings(resolvers=(server.resolver,), timeout=0.5,
                                    cache_size=10))
    client._cache._clock = lambda: now[0]
    names = [("x.long.test", "TXT"), ("nope.long.test", "A"), ("x.long.test", "A")]
    try:
        first = [run(client.query(n, t, Deadline(2))) for n, t in names]
    finally:
        server.stop()
    now[0] += 3599
    within_hour = [run(client.query(n, t, Deadline(2))) for n, t in names]
    now[0] += 2
    after_hour = [run(client.query(n, t, Deadline(2))) for n, t in names]
    now[0] += 86400 - 3600
    after_day = run(client.query("x.long.test", "TXT", Deadline(2)))
    assert [a.status for a in first] == [Status.OK, Status.NXDOMAIN, Status.NODATA]
    assert within_hour == first
    assert after_hour[0] == first[0] and after_hour[1].temporary and after_hour[2].temporary
    assert after_day.temporary


CHILD = """
import asyncio, collections, resource, sys
from scanner.dns import Deadline, DnsClient
resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
host, port = sys.argv[1].rsplit(":", 1)
share = sys.argv[2] == "kept-socket"
client = DnsClient([(host, int(port))], 3.0, cache_size=0, share_loopback=share)
async def go():
    d = Deadline(8)
    names = [f"{i}.2.0.192.bl.test" for i in range(500)]
    return await asyncio.gather(*(client.query(n, "A", d) for n in names))
print(dict(collections.Counter(a.status.name for a in asyncio.run(go()))))
"""


@pytest.mark.parametrize("transport", ["socket-per-query", "kept-socket"])
def test_many_concurrent_queries_do_not_run_out_of_file_descriptors(
        dns_server: DnsServer, transport: str) -> None:
    """500 look-ups at once (a few messages full of links) in a process allowed 128
    files: with a socket per query each query on the wire holds one, so they take
    turns (MAX_IN_FLIGHT) instead of failing with EMFILE (378 of 500 were ERROR
    before); the kept socket of a loopback resolver gives the same answers."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", CHILD, dns_server.resolver, transport],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "{'NXDOMAIN': 493, 'OK': 7}"  # 66-70, 72, 73 listed

"""One kept UDP socket per loopback resolver (:mod:`scanner.dns.shared_udp`): queries in
flight multiplexed by id (a colliding id sent under a fresh one and handed back under
the caller's), an unreachable resolver failing every query in flight, timeouts leaving
nothing behind, a new event loop getting a new socket. The answer tests every reply
must pass run over both transports in test_dns_wire.py and test_dns_edns.py."""

from __future__ import annotations

import asyncio
import socket

import dns.message
import dns.rcode
import pytest

from scanner.dns import Deadline, DnsClient, Status
from scanner.dns.shared_udp import SharedSockets, SharedUdp, is_loopback
from scanner.dns.stub import answers_question, build_query
from tests.auth.conftest import run
from tests.auth.fake_dns import FakeResolver, answer

NAME = "2.0.0.127.bl.example"


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", True), ("127.53.0.9", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.53", False), ("192.0.2.1", False), ("2001:db8::53", False),
    ("::ffff:192.0.2.1", False), ("localhost", False), ("", False),
])
def test_which_resolvers_are_on_the_loopback_interface(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_queries_with_the_same_id_in_flight_each_get_their_own_answer() -> None:
    """Three queries with one id at once: the resolver sees three ids, each caller gets
    the answer to its question under its own id."""
    def script(wire: bytes) -> list[bytes]:
        last = dns.message.from_wire(wire).question[0].name.labels[0].decode()
        return [answer(wire, f"127.0.0.{last}", name=f"{last}.0.0.127.bl.example")]

    with FakeResolver(script, delay=0.05) as fake:
        async def go() -> list[bytes | None]:
            shared = SharedUdp(("127.0.0.1", fake.port), asyncio.get_running_loop())
            try:
                queries = [build_query(f"{n}.0.0.127.bl.example", 1, query_id=0x1234)
                           for n in (2, 3, 4)]
                replies = await asyncio.gather(*(shared.exchange(q, 2.0) for q in queries
                                                 if q is not None))
                assert len(shared) == 0
                return [q for q in queries if q is not None] + replies
            finally:
                shared.close()

        got = run(go())
        sent_ids = {wire[:2] for wire in fake.queries}
    queries, replies = got[:3], got[3:]
    assert len(sent_ids) == 3 and len(fake.queries) == 3
    for n, query, reply in zip((2, 3, 4), queries, replies, strict=True):
        assert reply is not None and reply[:2] == b"\x12\x34"
        assert answers_question(query, reply) is not None
        assert dns.message.from_wire(reply).answer[0][0].address == f"127.0.0.{n}"


def test_an_unreachable_resolver_fails_the_queries_in_flight() -> None:
    """Nothing listens on the port: the kernel's ICMP "port unreachable" arrives as
    ECONNREFUSED on the socket; each query in flight fails with it at once, and the
    client reports ERROR (a temporary failure), not a timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed

    async def go() -> list[BaseException | bytes | None]:
        shared = SharedUdp(("127.0.0.1", port), asyncio.get_running_loop())
        try:
            queries = [build_query(f"{n}.example", 1) for n in range(3)]
            return await asyncio.gather(*(shared.exchange(q, 2.0) for q in queries
                                          if q is not None), return_exceptions=True)
        finally:
            shared.close()

    loop_start = asyncio.new_event_loop()
    try:
        begin = loop_start.time()
        outcomes = loop_start.run_until_complete(go())
        took = loop_start.time() - begin
    finally:
        loop_start.close()
    assert any(isinstance(o, ConnectionRefusedError) for o in outcomes), outcomes
    assert all(isinstance(o, ConnectionRefusedError) or o is None for o in outcomes)
    assert took < 1.0
    client = DnsClient([("127.0.0.1", port)], 1.5, cache_size=0)
    got = run(client.query(NAME, "A", Deadline(3)))
    assert got.status is Status.ERROR


def test_a_timeout_leaves_nothing_waiting_and_a_late_reply_is_dropped() -> None:
    with FakeResolver(lambda w: [answer(w, rcode=dns.rcode.NXDOMAIN)], delay=0.4) as fake:
        async def go() -> tuple[bytes | None, int, bytes | None]:
            shared = SharedUdp(("127.0.0.1", fake.port), asyncio.get_running_loop())
            try:
                first = build_query(NAME, 1, query_id=7)
                assert first is not None
                timed_out = await shared.exchange(first, 0.1)
                waiting = len(shared)
                await asyncio.sleep(0.5)  # the late reply arrives and is dropped
                second = build_query("other.example", 1, query_id=7)
                assert second is not None
                return timed_out, waiting, await shared.exchange(second, 2.0)
            finally:
                shared.close()

        timed_out, waiting, reply = run(go())
    assert timed_out is None and waiting == 0
    # the second query reused id 7: only the answer to its own question counts
    assert reply is not None and b"\x05other" in reply


def test_each_event_loop_gets_its_own_socket() -> None:
    with FakeResolver(lambda w: [answer(w, rcode=dns.rcode.NXDOMAIN)]) as fake:
        sockets = SharedSockets()
        server = ("127.0.0.1", fake.port)

        async def one() -> SharedUdp:
            shared = sockets.get(server)
            assert sockets.get(server) is shared
            query = build_query(NAME, 1)
            assert query is not None and await shared.exchange(query, 2.0) is not None
            return shared

        first = run(one())
        second = run(one())
        sockets.close()
    assert first is not second
    assert first._sock.fileno() == -1 and second._sock.fileno() == -1


def test_loops_in_two_threads_share_a_client_without_disturbing_each_other() -> None:
    """Each live loop keeps its own socket: one thread's queries never close or read
    the other's (before, a new loop closed the last one's sockets)."""
    import threading

    with FakeResolver(lambda w: [answer(w, "127.0.0.2")], delay=0.01) as fake:
        client = DnsClient([("127.0.0.1", fake.port)], 2.0, cache_size=0)
        results: list[list[Status]] = []

        def worker(tag: str) -> None:
            async def go() -> list[Status]:
                answers = []
                for n in range(15):
                    got = await client.query(f"{n}.{tag}.bl.example", "A", Deadline(5))
                    answers.append(got.status)
                return answers

            results.append(asyncio.run(go()))

        threads = [threading.Thread(target=worker, args=(tag,)) for tag in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert len(results) == 2
    assert all(status is Status.OK for answers in results for status in answers), results

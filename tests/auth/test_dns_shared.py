"""Identical queries in flight share one query on the wire (:mod:`scanner.dns.inflight`),
against a slow scripted server that counts what it is asked: each asker keeps its own
time limit, a failure reaches every asker, a cancelled asker leaves the query to the
others, and a query nobody waits for any more is given up."""

from __future__ import annotations

import asyncio
import time

import dns.rcode

from scanner.dns import Deadline, DnsClient, Status
from scanner.dns.inflight import SharedQueries
from tests.auth.conftest import run
from tests.auth.fake_dns import FakeResolver, answer

NAME = "2.0.0.127.bl.example"
SLOW = 0.4  # the server's delay: long enough for every asker to be waiting


def client_for(fake: FakeResolver) -> DnsClient:
    return DnsClient([("127.0.0.1", fake.port)], 2.0, cache_size=0)


def test_concurrent_identical_queries_share_one_query() -> None:
    with FakeResolver(lambda w: [answer(w, "127.0.0.2")], delay=SLOW) as fake:
        client = client_for(fake)

        async def go() -> list:
            d = Deadline(5)
            return await asyncio.gather(
                *(client.query(NAME, "A", d) for _ in range(5)),
                client.query(NAME.upper() + ".", "a", d))  # the same in other spelling

        got = run(go())
        asked = len(fake.queries)
    assert [a.addresses() for a in got] == [["127.0.0.2"]] * 6
    assert asked == 1
    assert len(client._shared) == 0  # nothing left behind


def test_other_types_and_names_are_not_shared() -> None:
    with FakeResolver(lambda w: [answer(w, "127.0.0.2")]) as fake:
        client = client_for(fake)

        async def go() -> list:
            d = Deadline(5)
            return await asyncio.gather(client.query(NAME, "A", d),
                                        client.query(NAME, "TXT", d),
                                        client.query("3.0.0.127.bl.example", "A", d))

        run(go())
        asked = len(fake.queries)
    assert asked == 3


def test_each_asker_keeps_its_own_deadline() -> None:
    """An asker with little time left gets TIMEOUT when its time is up; the query goes
    on for the one that started it with more."""
    with FakeResolver(lambda w: [answer(w, "127.0.0.2")], delay=SLOW) as fake:
        client = client_for(fake)

        async def go() -> tuple:
            first = asyncio.ensure_future(client.query(NAME, "A", Deadline(5)))
            await asyncio.sleep(0)  # let it start the query
            loop = asyncio.get_running_loop()
            began = loop.time()
            short = await client.query(NAME, "A", Deadline(0.1))
            return short, loop.time() - began, await first

        short, waited, long = run(go())
        asked = len(fake.queries)
    assert short.status is Status.TIMEOUT and waited < SLOW
    assert long.status is Status.OK and asked == 1


def test_a_cancelled_follower_does_not_touch_the_query() -> None:
    with FakeResolver(lambda w: [answer(w, "127.0.0.2")], delay=SLOW) as fake:
        client = client_for(fake)

        async def go() -> tuple:
            leader = asyncio.ensure_future(client.query(NAME, "A", Deadline(5)))
            follower = asyncio.ensure_future(client.query(NAME, "A", Deadline(5)))
            await asyncio.sleep(0)  # both start: one query, two askers
            follower.cancel()
            return await asyncio.gather(leader, follower, return_exceptions=True)

        leader, follower = run(go())
        asked = len(fake.queries)
    assert isinstance(follower, asyncio.CancelledError)
    assert leader.status is Status.OK and asked == 1


def test_the_followers_of_a_cancelled_leader_still_get_their_answer() -> None:
    """The leader's query goes with it; a task asks again for the followers."""
    with FakeResolver(lambda w: [answer(w, "127.0.0.2")], delay=SLOW) as fake:
        client = client_for(fake)

        async def go() -> tuple:
            leader = asyncio.ensure_future(client.query(NAME, "A", Deadline(5)))
            followers = [asyncio.ensure_future(client.query(NAME, "A", Deadline(5)))
                         for _ in range(3)]
            # cancel once the leader's query is on the wire (the server holds its answer
            # for SLOW): one loop turn is not always enough to send it, and a leader
            # cancelled before sending asks nothing
            for _ in range(200):
                if fake.queries:
                    break
                await asyncio.sleep(0.005)
            leader.cancel()
            got = await asyncio.gather(leader, *followers, return_exceptions=True)
            return got, len(client._shared)

        (leader, *followers), left = run(go())
        # the heir's query can be answered by the leader's late reply (same id, same
        # question) before the server's thread has taken the heir's from its socket:
        # give it the time to count it (at most a second; a missing query still fails)
        waited = time.monotonic() + 1.0
        while len(fake.queries) < 2 and time.monotonic() < waited:
            time.sleep(0.01)
        asked = len(fake.queries)
    assert isinstance(leader, asyncio.CancelledError)
    assert [a.addresses() for a in followers] == [["127.0.0.2"]] * 3
    assert asked == 2 and left == 0


def test_followers_with_more_time_than_the_leader_are_asked_for_again() -> None:
    with FakeResolver(lambda w: [answer(w, "127.0.0.2")], delay=SLOW) as fake:
        client = client_for(fake)

        async def go() -> tuple:
            return await asyncio.gather(client.query(NAME, "A", Deadline(0.1)),
                                        client.query(NAME, "A", Deadline(5)))

        leader, follower = run(go())
    assert leader.status is Status.TIMEOUT and follower.status is Status.OK


def test_a_query_asked_again_is_given_up_when_its_followers_leave() -> None:
    with FakeResolver(lambda w: [answer(w, "127.0.0.2")], delay=SLOW) as fake:
        client = client_for(fake)

        async def go() -> tuple:
            leader = asyncio.ensure_future(client.query(NAME, "A", Deadline(5)))
            follower = asyncio.ensure_future(client.query(NAME, "A", Deadline(0.2)))
            await asyncio.sleep(0)
            leader.cancel()
            await asyncio.gather(leader, return_exceptions=True)
            heir = client._shared._flights[(NAME, "A")].task
            got = await follower
            await asyncio.gather(heir, return_exceptions=True)
            return got, heir, len(client._shared)

        follower, heir, left = run(go())
    assert follower.status is Status.TIMEOUT
    assert heir is not None and heir.cancelled() and left == 0


def test_a_failure_reaches_every_asker() -> None:
    with FakeResolver(lambda w: [answer(w, rcode=dns.rcode.SERVFAIL)], delay=SLOW) as fake:
        client = client_for(fake)

        async def go() -> list:
            d = Deadline(5)
            return await asyncio.gather(*(client.query(NAME, "A", d) for _ in range(4)))

        got = run(go())
        asked = len(fake.queries)
    assert [a.status for a in got] == [Status.ERROR] * 4 and asked == 1


def test_a_query_nobody_waits_for_is_given_up() -> None:
    """The only asker's time is up: nothing is left in flight, and the next asker
    starts a query of its own."""
    with FakeResolver(lambda w: [answer(w, "127.0.0.2")], delay=SLOW) as fake:
        client = client_for(fake)

        async def go() -> tuple:
            gone = await client.query(NAME, "A", Deadline(0.05))
            left = len(client._shared)
            again = await client.query(NAME, "A", Deadline(5))
            return gone, left, again

        gone, left, again = run(go())
    assert gone.status is Status.TIMEOUT and left == 0
    assert again.status is Status.OK


def test_past_the_bound_queries_run_on_their_own() -> None:
    async def go() -> tuple:
        shared: SharedQueries[str] = SharedQueries(size=1)
        calls = []
        release = asyncio.Event()

        async def work(tag: str) -> str:
            calls.append(tag)
            await release.wait()
            return tag

        tasks = [asyncio.ensure_future(shared.run(key, 5.0, lambda _, k=key: work(k), "late"))
                 for key in ("a", "a", "b", "b")]
        while len(calls) < 3:  # "a" once, "b" twice: the map holds one key
            await asyncio.sleep(0)
        held = len(shared)
        release.set()
        return await asyncio.gather(*tasks), calls, held

    results, calls, held = asyncio.run(go())
    assert results == ["a", "a", "b", "b"]
    assert sorted(calls) == ["a", "b", "b"] and held == 1


def test_an_exception_of_the_shared_query_reaches_every_asker() -> None:
    async def go() -> list:
        shared: SharedQueries[str] = SharedQueries()
        calls = []

        async def broken(limit: float) -> str:
            calls.append(1)
            await asyncio.sleep(0)
            raise OSError("no route")

        got = await asyncio.gather(*(shared.run("k", 5.0, broken, "late") for _ in range(3)),
                                   return_exceptions=True)
        return got + [len(calls), len(shared)]

    *errors, calls, left = asyncio.run(go())
    assert [str(e) for e in errors] == ["no route"] * 3 and all(
        isinstance(e, OSError) for e in errors)
    assert (calls, left) == (1, 0)

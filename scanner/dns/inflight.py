"""Identical DNS queries in flight share one network query.

Concurrent messages in one worker often ask the same name at once (a DNSBL zone for
the same relay, a sender domain's SPF record, a popular URL's domain); the answer cache
helps only once an answer is there. :class:`SharedQueries` lets the first asker of a
key (name and type), the leader, run the query itself, within its own time, and every
later asker, a follower, wait for its outcome within its own time:

* a follower whose time is up gets the "timed out" value, one that is cancelled just
  leaves; neither touches the query (each waits on a future of its own);
* the leader's answer, or exception, reaches every follower;
* when the leader cannot give them an answer (its own, shorter time ran out, or it was
  cancelled), a task asks again for the followers still waiting, within the longest
  time one of them has left; it is cancelled when its last follower leaves, so a query
  nobody waits for holds no socket;
* at most ``size`` keys are shared at once; further queries run on their own.

The leader runs the query in its own coroutine, as a lone query did before sharing: a
task per query (the obvious design) cost about 90,000 more instructions a query, 1.6 %
of the analysis of a corpus message (callgrind, bench/throughput/profile_pipeline.py).

One instance per DNS client; its map belongs to the event loop that uses it (tests run
several loops one after another, so a new loop starts an empty map).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

Start = Callable[[float], Coroutine[Any, Any, Any]]
"""Begins the query, bounded by the seconds given."""

MAX_SHARED = 1000
"""Keys shared at once per client."""


class _Waiter:
    """A follower: the future its answer comes in, and when its time is up."""

    __slots__ = ("end", "future")

    def __init__(self, future: asyncio.Future[Any], end: float) -> None:
        self.future = future
        self.end = end


class _Flight:
    """One query in flight: its followers, and the task asking for them (if any)."""

    __slots__ = ("task", "waiters")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.waiters: list[_Waiter] = []


class SharedQueries(Generic[T]):
    """A bounded map of queries in flight, keyed by what makes two queries identical."""

    def __init__(self, size: int = MAX_SHARED) -> None:
        self._size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flights: dict[Hashable, _Flight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: Hashable, limit: float, start: Start, timed_out: T) -> T:
        """The outcome of the query under ``key``: ``start(limit)`` when none is in
        flight, else that one's, or ``timed_out`` after ``limit`` seconds."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._flights = loop, {}
        flight = self._flights.get(key)
        if flight is not None:
            return await self._follow(key, flight, limit, timed_out)
        if len(self._flights) >= self._size:
            alone: T = await start(limit)
            return alone
        flight = self._flights[key] = _Flight()
        try:  # the leader's query runs in its own coroutine: no frame more on each resume
            result: T = await start(limit)
        except asyncio.CancelledError:
            self._hand_on(key, flight, start, timed_out)
            raise
        except Exception as exc:
            self._settle(key, flight, None, exc)
            raise
        if result == timed_out:
            self._hand_on(key, flight, start, timed_out)
        else:
            self._settle(key, flight, result, None)
        return result

    async def _heir(self, key: Hashable, flight: _Flight, start: Start, limit: float) -> None:
        """The query asked again for the followers of a leader without an answer."""
        try:
            result = await start(limit)
        except BaseException as exc:
            self._settle(key, flight, None, exc)
            raise
        self._settle(key, flight, result, None)

    async def _follow(self, key: Hashable, flight: _Flight, limit: float,
                      timed_out: T) -> T:
        """Wait for the query in flight, at most ``limit`` seconds."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), loop.time() + limit)
        flight.waiters.append(waiter)
        timer = loop.call_later(limit, _expire, waiter.future, timed_out)
        try:
            result: T = await waiter.future
            return result
        finally:
            timer.cancel()
            flight.waiters.remove(waiter)
            if flight.task is not None and not flight.waiters and not flight.task.done():
                flight.task.cancel()  # nobody waits for the heir any more
                self._forget(key, flight)

    def _settle(self, key: Hashable, flight: _Flight, result: Any,
                error: BaseException | None) -> None:
        """Every follower still waiting gets ``result`` or ``error``."""
        self._forget(key, flight)
        for waiter in flight.waiters:
            if waiter.future.done():
                continue
            if isinstance(error, asyncio.CancelledError):
                waiter.future.cancel()
            elif error is not None:
                waiter.future.set_exception(error)
            else:
                waiter.future.set_result(result)

    def _hand_on(self, key: Hashable, flight: _Flight, start: Start, timed_out: T) -> None:
        """The leader has no answer for the followers: a task asks for them."""
        self._forget(key, flight)
        waiting = [w for w in flight.waiters if not w.future.done()]
        loop = asyncio.get_running_loop()
        left = max((w.end for w in waiting), default=0.0) - loop.time()
        if left <= 0 or key in self._flights:
            return  # their timers answer them
        self._flights[key] = flight
        flight.task = loop.create_task(self._heir(key, flight, start, left))
        flight.task.add_done_callback(_retrieve)

    def _forget(self, key: Hashable, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]


def _expire(future: asyncio.Future[Any], timed_out: Any) -> None:
    if not future.done():
        future.set_result(timed_out)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """An heir's outcome went to its followers: nobody else reads its exception."""
    if not task.cancelled():
        task.exception()

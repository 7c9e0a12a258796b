"""The thread a network pen pals store (:mod:`scanner.penpals_pg`) is used from.

Its calls block on the network, so the pen pals check runs them here, one at a time
(one connection per process), and never on the event loop:

* a message's look-ups are awaited at most ``timeout`` seconds (a call still waiting
  its turn is then dropped), and once a caller gave up on the call running in the
  thread (a database that stopped answering on an open connection:
  ``statement_timeout`` needs a live server), the next ones fail at once while that
  call still runs, instead of each waiting behind it;
* a delivered message's recording is handed over without waiting; at most
  :data:`MAX_PENDING` wait, so a hanging database cannot make them pile up.

One thread per process: a thread does not survive a fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from scanner.penpals_store import PenPalsUnavailable

MAX_PENDING = 1000
"""Recordings that may wait for the database per process; more are dropped."""
R = TypeVar("R")


class StoreThread:
    """One worker thread for a store's calls; see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._slots = threading.BoundedSemaphore(MAX_PENDING)
        self._numbers = itertools.count(1)
        self._running = 0  # the number of the call running now; 0: none runs
        self._running_since = 0.0
        self._given_up = 0  # the running call a caller stopped waiting for

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None or self._pid != os.getpid():
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="penpals")
            self._pid = os.getpid()
        return self._pool

    def _timed(self, func: Callable[..., R], *args: Any) -> R:
        self._running, self._running_since = next(self._numbers), self._clock()
        try:
            return func(*args)
        finally:
            self._running = 0

    async def call(self, timeout: float, func: Callable[..., R], *args: Any) -> R:
        """``func(*args)`` in the thread; TimeoutError after ``timeout`` seconds, and
        PenPalsUnavailable at once while a call another caller gave up on still runs."""
        running = self._running
        if running and running == self._given_up:
            raise PenPalsUnavailable(f"a database call has not returned for "
                                     f"{self._clock() - self._running_since:.1f} s")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                return await loop.run_in_executor(self._executor(),
                                                  partial(self._timed, func, *args))
        except TimeoutError:
            self._given_up = self._running  # what held this call up (0: nothing runs)
            raise

    def submit(self, func: Callable[[], None]) -> bool:
        """Run ``func()`` in the thread without waiting; False when too many wait."""
        if not self._slots.acquire(blocking=False):
            return False

        def job() -> None:
            try:
                self._timed(func)
            finally:
                self._slots.release()

        self._executor().submit(job)
        return True

    def close(self, last: Callable[[], None], wait: float) -> None:
        """Run ``last`` after the calls submitted so far and let the thread end; wait
        for that at most ``wait`` seconds (a worker exits with ``os._exit``, which
        would drop recordings still waiting)."""
        pool, self._pool = self._pool, None
        if pool is None or self._pid != os.getpid():
            return
        done = pool.submit(last)
        pool.shutdown(wait=False)
        with contextlib.suppress(Exception):
            done.result(timeout=wait)

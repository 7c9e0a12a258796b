"""Accepting SMTP/LMTP connections within the worker's share of ``server.concurrency``.

amavis's ``$max_servers`` and Postfix's ``maxproc`` bound how many messages are in
flight, and with them memory (README, Sizing memory). Every worker gets a fixed share
of ``server.concurrency`` (:func:`worker_shares`; the shares add up to exactly the
setting) and accepts a new connection only while fewer than its share are open. The
listening sockets are shared by all workers, so a connection that finds one worker full
is accepted by another; only when every worker is full does it wait in the kernel's
listen queue (Postfix's TCP connect succeeds at once and it waits for the greeting,
``smtp_helo_timeout``, 300 s by default) until a connection closes.

asyncio's ``create_server`` cannot pause accepting, so the accept loop is ours: one task
per listening socket, all of them drawing on one count of open connections. A loop holds
no slot while it waits: it waits for a free slot, then for its socket to be readable,
and takes the slot and the connection together (no ``await`` between them). Reserving
a slot before waiting in ``accept`` let a listener nobody used keep one to itself, and
with a share of 1 starve the other listener for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("scanner")

ACCEPT_RETRY_DELAY = 1.0
"""Seconds to wait after the process ran out of file descriptors or memory."""
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def worker_shares(concurrency: int, workers: int) -> list[int]:
    """Each worker's connection limit: ``concurrency`` spread as evenly as it goes.

    >>> worker_shares(20, 3)
    [7, 7, 6]
    """
    base, extra = divmod(concurrency, workers)
    return [base + (1 if index < extra else 0) for index in range(workers)]


class ConnectionLimit:
    """Accept loops for a worker's listening sockets, at most ``limit`` connections open."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop,
                 on_change: Callable[[int, int], None] | None = None) -> None:
        """``on_change(open, limit)`` is told every change (the worker's scoreboard slot)."""
        if limit < 1:
            raise ValueError("a worker's connection limit must be at least 1")
        self.limit = limit
        self._loop = loop
        self._open = 0
        self._room = asyncio.Event()  # set while fewer than ``limit`` are open
        self._room.set()
        self._tasks: list[asyncio.Task] = []
        self._listening: list[socket.socket] = []
        self._sessions: set[asyncio.Protocol] = set()
        self._on_change = on_change
        self._report()

    @property
    def open(self) -> int:
        """Connections accepted and not yet finished."""
        return self._open

    def serve(self, sock: socket.socket, factory: Callable[[], asyncio.Protocol]) -> None:
        """Start accepting on ``sock`` (non-blocking, listening), a protocol per connection."""
        self._listening.append(sock)
        self._tasks.append(self._loop.create_task(self._accept_loop(sock, factory)))

    def close(self) -> None:
        """Stop accepting; open connections go on until they end."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()

    async def stop_listening(self) -> None:
        """Stop accepting for good and close this process's copies of the listening
        sockets: once every process of the filter has (the master closes its own when
        told to stop), a new connection is refused at once instead of waiting in the
        listen queue, without a greeting, until the last transaction is over."""
        tasks = list(self._tasks)
        self.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in self._listening:
            sock.close()
        self._listening.clear()

    def close_idle(self, quiet_for: float = 0.0) -> int:
        """Say goodbye (421) to every session outside a transaction (and quiet for
        ``quiet_for`` seconds); how many there were.

        Called while the worker stops, repeatedly, so a session is closed as soon as its
        transaction is over; sessions inside one are left to finish."""
        closed = 0
        for protocol in list(self._sessions):
            goodbye = getattr(protocol, "close_if_idle", None)
            if goodbye is not None and goodbye(quiet_for):
                closed += 1
        return closed

    async def _accept_loop(self, sock: socket.socket,
                           factory: Callable[[], asyncio.Protocol]) -> None:
        while True:
            await self._room.wait()
            await self._readable(sock)
            if self._open >= self.limit:  # another listener's connection came first
                continue
            conn = await self._accept(sock)
            if conn is None:
                continue
            await self._start(conn, factory)
            if self._open >= self.limit:
                log.debug("all %d connection slots of this worker in use; further "
                          "connections go to other workers or wait", self.limit)

    async def _readable(self, sock: socket.socket) -> None:
        """Until a connection waits on ``sock`` (or another worker took it meanwhile)."""
        ready = self._loop.create_future()
        fd = sock.fileno()
        self._loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            self._loop.remove_reader(fd)

    async def _accept(self, sock: socket.socket) -> socket.socket | None:
        """One accepted connection, or None after an error that is worth retrying (or
        when another worker took the connection first)."""
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno in _RESOURCE_ERRORS:
                log.error("cannot accept connections on %s: %s; retrying in %.0f s",
                          _address(sock.getsockname, "a listening socket"), exc.strerror,
                          ACCEPT_RETRY_DELAY)
                await asyncio.sleep(ACCEPT_RETRY_DELAY)
            return None  # ECONNABORTED and the like: the client gave up, go on
        conn.setblocking(False)
        return conn

    async def _start(self, conn: socket.socket,
                     factory: Callable[[], asyncio.Protocol]) -> None:
        """Run a protocol on ``conn``; its slot is freed when its session task ends."""
        self._open += 1  # before any await: the slot is taken with the connection
        if self._open >= self.limit:
            self._room.clear()
        self._report()
        try:
            _, protocol = await self._loop.connect_accepted_socket(factory, conn)
        except Exception as exc:  # the connection died before the protocol got it
            log.info("connection from %s dropped before its greeting: %s",
                     _address(conn.getpeername, "a client"), exc)
            conn.close()
            self._finished()
            return
        session = getattr(protocol, "session_task", None)
        if session is None or session.done():  # closed at once
            self._finished()
        else:
            self._sessions.add(protocol)
            session.add_done_callback(lambda _task: self._finished(protocol))

    def _finished(self, protocol: asyncio.Protocol | None = None) -> None:
        if protocol is not None:
            self._sessions.discard(protocol)
        self._open -= 1
        self._room.set()
        self._report()

    def _report(self) -> None:
        if self._on_change is not None:
            self._on_change(self._open, self.limit)


def _address(address: Callable[[], tuple], unknown: str) -> str:
    """``[host]:port`` from ``sock.getsockname`` or ``getpeername``; ``unknown`` if gone."""
    with contextlib.suppress(OSError):
        host, port = address()[:2]
        return f"[{host}]:{port}"
    return unknown

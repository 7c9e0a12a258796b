"""A small asyncio client for clamd: INSTREAM scans over Unix or TCP sockets.

Why not pyclamd: it uses blocking sockets, so one slow scan would stall the worker's
event loop and every other message in flight. This client speaks the protocol with
asyncio streams instead, with a connect timeout and a per-request timeout.

Protocol (clamd's ``z``-prefixed commands, NUL-terminated): ``zINSTREAM\\0``, then
chunks of ``<4-byte big-endian length><bytes>``, then a zero length. The reply is
``stream: OK``, ``stream: NAME FOUND`` (several with AllMatch), or ``... ERROR``;
``INSTREAM size limit exceeded. ERROR`` means the data was larger than clamd's
StreamMaxLength. Endpoints are written ``unix:/path`` or ``tcp:host:port``
(``tcp:[::1]:3310`` for IPv6); several are tried in order until one answers.

Connections are kept open between scans with clamd's ``zIDSESSION`` (replies then carry
the request number, ``1: stream: OK``), for data up to :data:`SESSION_MAX`: a message is
usually the raw mail plus one or two decoded parts, and a new connection per piece cost
more of the filter's CPU than the scan request itself. Larger data gets a connection of
its own, where clamd's early "size limit exceeded" answer is read while we still send.
A kept connection that clamd closed while it was idle is noticed and replaced once; any
other failure is the endpoint's, exactly as on a connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scanner.checks.clamd_wire import MAX_REPLY, ReplyTooLong, exchange, open_socket
from scanner.streams import idle_and_open
from scanner.throttle import LogThrottle, held_note

log = logging.getLogger("scanner.checks.clamd")

SESSION_MAX = 64 * 1024
"""Data up to this size is scanned on a kept-open session connection."""
SESSION_IDLE = 10.0
"""Seconds a session may sit unused before it is closed instead of reused (clamd's own
IdleTimeout is 30 s by default)."""
SESSION_POOL = 16
"""Idle sessions kept per endpoint."""
LIMITS_PREFIX = "Heuristics.Limits.Exceeded"
"""clamd's name for "a scan limit was hit" (with AlertExceedsMax): not scanned, not a virus."""

_EXTENDED_INFO = re.compile(r"\([0-9a-fA-F]{32,64}:\d+\)$")


class ClamdError(Exception):
    """clamd could not be used: connection, timeout, protocol or server error."""


class ClamdUnreachable(ClamdError):
    """No connection, or it was lost before clamd said anything: what a clamd being
    restarted looks like, worth another try (:attr:`ClamdClient.retry_delays`)."""


class _Stale(Exception):
    """A session connection was gone before clamd said anything."""


class _Reset(_Stale):
    """... with an error (reset, broken pipe), which may have hidden an answer."""


class _AskAlone(Exception):
    """Ask again on a connection of its own, which is read to the end."""


class _Session:
    """One ``zIDSESSION`` connection; ``sent`` numbers its requests as clamd does."""

    def __init__(self, endpoint: Endpoint, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.endpoint = endpoint
        self.reader = reader
        self.writer = writer
        self.sent = 0
        self.idle_since = time.monotonic()
        self.loop = asyncio.get_running_loop()

    def usable(self) -> bool:
        """Open, of this event loop, nothing unread, not idle too long."""
        return (self.loop is asyncio.get_running_loop()
                and idle_and_open(self.reader, self.writer)
                and time.monotonic() - self.idle_since < SESSION_IDLE)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a clamd listens: a Unix socket path, or a TCP host and port."""

    kind: str
    address: str
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.address}"
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"tcp:{host}:{self.port}"

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.kind == "unix":
            return await asyncio.open_unix_connection(self.address)
        return await asyncio.open_connection(self.address, self.port)


def parse_endpoint(text: str) -> Endpoint:
    """``unix:/path`` or ``tcp:host:port`` -> :class:`Endpoint`; ValueError otherwise."""
    kind, sep, rest = text.partition(":")
    if sep and kind == "unix" and rest.startswith("/"):
        return Endpoint("unix", rest)
    if sep and kind == "tcp":
        host, sep2, port = rest.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if sep2 and host and port.isdigit() and 0 < int(port) < 65536:
            return Endpoint("tcp", host, int(port))
    raise ValueError(f"{text!r} is not a clamd endpoint; write unix:/path/to/clamd.ctl "
                     "or tcp:host:port")


class Status(enum.Enum):
    """A definite answer from clamd."""

    CLEAN = "clean"
    INFECTED = "infected"
    TOO_LARGE = "too-large"


@dataclass(frozen=True, slots=True)
class ScanReply:
    """clamd's answer to one INSTREAM: status, virus names, and who answered."""

    status: Status
    names: tuple[str, ...] = ()
    endpoint: str = ""


def _time_left(delay: float, deadline: float | None) -> bool:
    """True when a retry after ``delay`` seconds would still start before ``deadline``."""
    return deadline is None or asyncio.get_running_loop().time() + delay < deadline


def parse_reply(raw: bytes) -> ScanReply:
    """Interpret an INSTREAM reply; raise :class:`ClamdError` for errors and garbage.

    A virus named before or after an error record still counts: the error says the
    scan did not finish, not that the name is wrong (with ``fail_action = "unchecked"``
    the error alone would let the virus pass as UNCHECKED)."""
    text = raw.decode("utf-8", "replace")
    records = [r.strip() for r in re.split(r"[\0\n]", text) if r.strip()]
    if not records:
        raise ClamdError("clamd closed the connection without an answer")
    names: list[str] = []
    errors: list[str] = []
    clean = 0
    for record in records:
        if record.endswith(" ERROR"):
            if "size limit exceeded" in record.lower():
                return ScanReply(Status.TOO_LARGE)
            errors.append(record)
            continue
        if not record.startswith("stream: "):
            raise ClamdError(f"unexpected answer from clamd: {record[:200]!r}")
        body = record[len("stream: "):]
        if body == "OK":
            clean += 1
        elif body.endswith(" FOUND") and len(body) > len(" FOUND"):
            name = _EXTENDED_INFO.sub("", body[: -len(" FOUND")].strip())
            if name and name not in names:
                names.append(name)
        else:
            raise ClamdError(f"unexpected answer from clamd: {record[:200]!r}")
    if names:
        return ScanReply(Status.INFECTED, tuple(names))
    if errors:
        raise ClamdError(f"clamd error: {errors[0][:200]}")
    return ScanReply(Status.CLEAN)


class ClamdClient:
    """Scan bytes with the first clamd endpoint that answers.

    An endpoint that failed is tried after the healthy ones for ``retry_after``
    seconds, so a dead first endpoint does not cost a timeout on every request. When
    every endpoint failed, the ones that could not be reached or hung up without an
    answer (:class:`ClamdUnreachable`: a clamd being restarted) are tried again after
    each of ``retry_delays`` in turn, as amavis's ask_daemon_internal does (two more
    rounds, after 1 s and after 6 s), but only while the caller's deadline leaves time.
    An endpoint still unreachable after all of them is not retried again for
    ``retry_after`` seconds (one attempt per message meanwhile): a clamd that stays
    down costs the messages of one round the delays, not every message (amavis waits
    them out for each).
    """

    def __init__(self, endpoints: Sequence[str | Endpoint], *, timeout: float = 30.0,
                 connect_timeout: float = 5.0, chunk_size: int = 64 * 1024,
                 retry_after: float = 10.0, reuse: bool = True,
                 retry_delays: Sequence[float] = (1.0, 6.0),
                 inconclusive: Callable[[str], bool] | None = None) -> None:
        if not endpoints:
            raise ValueError("at least one clamd endpoint is needed")
        self.endpoints = [e if isinstance(e, Endpoint) else parse_endpoint(e)
                          for e in endpoints]
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.chunk_size = chunk_size
        self.retry_after = retry_after
        self.reuse = reuse
        self.retry_delays = tuple(retry_delays)
        self.inconclusive = inconclusive or (lambda name: name.startswith(LIMITS_PREFIX))
        """Names after which a session's answer is asked again alone (read to the end)."""
        self.requests = 0
        """INSTREAM requests sent (each endpoint attempt counts once)."""
        self.connections = 0
        """Connections opened to clamd."""
        self._down_until: dict[Endpoint, float] = {}
        self._given_up_until: dict[Endpoint, float] = {}
        self._idle: dict[Endpoint, list[_Session]] = {}
        self._failures = LogThrottle(retry_after)

    def _ordered(self) -> list[Endpoint]:
        now = time.monotonic()
        healthy = [e for e in self.endpoints if self._down_until.get(e, 0.0) <= now]
        return healthy + [e for e in self.endpoints if e not in healthy]

    async def instream(self, data: bytes, deadline: float | None = None) -> ScanReply:
        """Scan ``data``; raise :class:`ClamdError` when no endpoint gave an answer.

        ``deadline`` (the event loop's clock): no attempt runs past it, and no retry
        starts unless its delay ends before it."""
        errors: list[str] = []
        endpoints = self._ordered()
        now = time.monotonic()
        # an endpoint whose whole retry round failed lately gets one attempt, no retries:
        # while clamd is down, each message would otherwise wait out every delay first
        given_up = {e for e in endpoints if self._given_up_until.get(e, 0.0) > now}
        for delay in (0.0, *self.retry_delays):
            if delay:
                if not endpoints or not _time_left(delay, deadline):
                    break
                log.info("clamd %s: retrying in %g s", ", ".join(map(str, endpoints)), delay)
                await asyncio.sleep(delay)
            again: list[Endpoint] = []
            for endpoint in endpoints:
                try:
                    reply = await self._attempt(endpoint, data, deadline)
                except ClamdError as exc:
                    self._down_until[endpoint] = time.monotonic() + self.retry_after
                    self._report_failure(endpoint, exc)
                    errors.append(f"{endpoint}: {exc}")
                    if isinstance(exc, ClamdUnreachable) and endpoint not in given_up:
                        again.append(endpoint)
                    continue
                self._down_until.pop(endpoint, None)
                self._given_up_until.pop(endpoint, None)
                self._report_recovery(endpoint)
                return ScanReply(reply.status, reply.names, str(endpoint))
            endpoints = again
        for endpoint in endpoints:  # still unreachable after every retry allowed
            self._given_up_until[endpoint] = time.monotonic() + self.retry_after
        unique = list(dict.fromkeys(errors))
        raise ClamdError("; ".join(unique) + (f" ({len(errors)} attempts)"
                                              if len(errors) > len(unique) else ""))

    async def _attempt(self, endpoint: Endpoint, data: bytes,
                       deadline: float | None) -> ScanReply:
        if deadline is None:
            return await self._instream_at(endpoint, data)
        try:
            async with asyncio.timeout_at(deadline):
                return await self._instream_at(endpoint, data)
        except TimeoutError:
            raise ClamdError("no answer before the check's deadline") from None

    def _report_failure(self, endpoint: Endpoint, exc: ClamdError) -> None:
        """Log a failing endpoint at once, then at most once per ``retry_after`` seconds
        with the number of failures in between: while clamd is down, every message and
        every retry by Postfix fails the same way (each still gets its own CLAMAV_FAIL in
        its summary line), and one warning per message would bury everything else."""
        held = self._failures.due(endpoint)
        if held is not None:
            log.warning("clamd %s: %s%s", endpoint, exc, held_note(held, "more failed requests"))

    def _report_recovery(self, endpoint: Endpoint) -> None:
        held = self._failures.end(endpoint)
        if held is not None:
            log.warning("clamd %s: answering again%s", endpoint,
                        held_note(held, "more failed requests"))

    async def command(self, command: str) -> str:
        """Send a simple command (PING, VERSION) to the first endpoint that answers."""
        errors: list[str] = []
        for endpoint in self._ordered():
            try:
                raw = await self._exchange(endpoint, [f"z{command}\0".encode("ascii")])
            except ClamdError as exc:
                errors.append(f"{endpoint}: {exc}")
                continue
            return raw.rstrip(b"\0\n").decode("utf-8", "replace")
        raise ClamdError("; ".join(errors))

    async def ping(self) -> bool:
        """True when some endpoint answers PONG."""
        try:
            return await self.command("PING") == "PONG"
        except ClamdError:
            return False

    async def _instream_at(self, endpoint: Endpoint, data: bytes) -> ScanReply:
        if self.reuse and len(data) <= SESSION_MAX:
            return await self._session_instream(endpoint, data)
        return await self._alone(endpoint, data)

    def _pieces(self, data: bytes) -> list[bytes | memoryview]:
        view = memoryview(data)
        pieces: list[bytes | memoryview] = [b"zINSTREAM\0"]
        for offset in range(0, len(view), self.chunk_size):
            chunk = view[offset:offset + self.chunk_size]
            pieces.append(struct.pack("!I", len(chunk)))
            pieces.append(chunk)
        pieces.append(b"\0\0\0\0")
        return pieces

    # -- kept-open sessions ------------------------------------------------------------
    async def _session_instream(self, endpoint: Endpoint, data: bytes) -> ScanReply:
        pooled = self._take(endpoint)
        if pooled is not None:
            try:
                return await self._ask(pooled, data)
            except _Stale:
                pass  # clamd closed it while it was idle: once more on a new session
            except _AskAlone:
                return await self._alone(endpoint, data)
        session = _Session(endpoint, *await self._connect(endpoint))
        session.writer.write(b"zIDSESSION\0")
        try:
            return await self._ask(session, data)
        except (_Reset, _AskAlone):
            # A new session reset before any answer: clamd going away, or (its
            # StreamMaxLength below 64 KiB) its "size limit exceeded" lost with the
            # failed write. Alone, on a socket that is read to the end, either shows.
            return await self._alone(endpoint, data)
        except _Stale as exc:
            raise ClamdUnreachable(str(exc)) from None

    async def _alone(self, endpoint: Endpoint, data: bytes) -> ScanReply:
        self.requests += 1
        return parse_reply(await self._exchange(endpoint, self._pieces(data)))

    async def _ask(self, session: _Session, data: bytes) -> ScanReply:
        """One INSTREAM on ``session``; it goes back to the pool only after a clean answer."""
        self.requests += 1
        session.sent += 1
        try:
            async with asyncio.timeout(self.timeout):
                for piece in self._pieces(data):
                    session.writer.write(piece)
                await session.writer.drain()
                raw = await session.reader.readuntil(b"\0")
        except TimeoutError:
            session.close()
            raise ClamdError(f"no answer within {self.timeout} s") from None
        except asyncio.IncompleteReadError as exc:
            session.close()
            if exc.partial:
                raise ClamdError(f"connection closed in the middle of an answer: "
                                 f"{exc.partial[:200]!r}") from None
            raise _Stale("clamd closed the connection without an answer") from None
        except asyncio.LimitOverrunError:
            session.close()
            raise ClamdError(f"reply longer than {MAX_REPLY} bytes") from None
        except OSError as exc:  # reset or broken pipe before any answer
            session.close()
            raise _Reset(f"connection failed: {exc.strerror or exc}") from None
        except asyncio.CancelledError:
            session.close()  # an answer may still come: never reuse this connection
            raise
        number, sep, rest = raw.partition(b": ")
        try:
            if not sep or number != str(session.sent).encode():
                raise ClamdError(f"unexpected answer from clamd: {raw[:200]!r}")
            reply = parse_reply(rest)
        except ClamdError:
            session.close()
            if sep and rest.rstrip(b"\0").endswith(b" ERROR"):
                raise _AskAlone() from None  # a virus may be named after it: read it all
            raise
        if reply.status is Status.CLEAN:
            self._give(session)
            return reply
        # With AllMatch clamd may send more records for the same request; how many is
        # not known, so the session is not reused. A virus name is enough as it is, but a
        # limit alert (or a name the check counts as spam) read alone could hide a virus
        # named after it: ask again alone.
        session.close()
        if reply.status is Status.INFECTED and all(map(self.inconclusive, reply.names)):
            raise _AskAlone()
        return reply

    def _take(self, endpoint: Endpoint) -> _Session | None:
        idle = self._idle.get(endpoint)
        while idle:
            session = idle.pop()
            if session.usable():
                return session
            session.close()
        return None

    def _give(self, session: _Session) -> None:
        idle = self._idle.setdefault(session.endpoint, [])
        if len(idle) < SESSION_POOL:
            session.idle_since = time.monotonic()
            idle.append(session)
        else:
            session.close()

    def close(self) -> None:
        """Close the kept-open sessions."""
        for idle in self._idle.values():
            for session in idle:
                session.close()
        self._idle.clear()

    # -- one connection per request ------------------------------------------------------
    async def _connect(self, endpoint: Endpoint
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.connections += 1
        try:
            return await asyncio.wait_for(endpoint.open(), self.connect_timeout)
        except TimeoutError:  # its listen backlog is full: as unreachable (amavis retries)
            raise ClamdUnreachable(f"connect timed out after {self.connect_timeout} s"
                                   ) from None
        except OSError as exc:
            raise ClamdUnreachable(f"cannot connect: {exc.strerror or exc}") from None

    async def _connect_socket(self, endpoint: Endpoint) -> socket.socket:
        self.connections += 1
        try:
            return await asyncio.wait_for(open_socket(endpoint), self.connect_timeout)
        except TimeoutError:  # its listen backlog is full: as unreachable (amavis retries)
            raise ClamdUnreachable(f"connect timed out after {self.connect_timeout} s"
                                   ) from None
        except OSError as exc:
            raise ClamdUnreachable(f"cannot connect: {exc.strerror or exc}") from None

    async def _exchange(self, endpoint: Endpoint, pieces: list[bytes | memoryview]) -> bytes:
        """Connect, send ``pieces``, read the reply until clamd closes the connection.

        Reading goes on while sending (:mod:`scanner.checks.clamd_wire`): clamd answers
        and closes early when the stream is too long, and that answer must be read."""
        sock = await self._connect_socket(endpoint)
        try:
            async with asyncio.timeout(self.timeout):
                reply, send_error = await exchange(sock, pieces)
        except TimeoutError:
            raise ClamdError(f"no answer within {self.timeout} s") from None
        except ReplyTooLong as exc:
            raise ClamdError(str(exc)) from None
        except OSError as exc:
            raise ClamdUnreachable(f"connection failed: {exc.strerror or exc}") from None
        finally:
            sock.close()
        if not reply:
            raise ClamdUnreachable(f"connection lost while sending: {send_error}" if send_error
                                   else "clamd closed the connection without an answer")
        return reply

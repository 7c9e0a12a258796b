"""An async DNS client (dnspython messages, our own transport): typed answers, per-query
timeouts, shared cache.

A query never raises for DNS trouble: it returns an :class:`Answer` whose
:class:`Status` says what happened (OK, NXDOMAIN, NODATA, TIMEOUT, ERROR). TIMEOUT and
ERROR are the temporary outcomes callers turn into ``*_TEMPFAIL`` results.

The cache (:mod:`scanner.dns.cache`) keeps final answers, positive and negative, for
their TTLs in front of dnspython. :func:`get_client` keeps one client per resolver
configuration in the process, so every check using the same resolvers shares one cache.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver

from scanner.dns.budget import Deadline
from scanner.dns.cache import (
    ANY_TYPE,
    MAX_NEGATIVE_TTL,
    MAX_TTL,
    AnswerCache,
    cache_key,
    negative_ttl,
)
from scanner.dns.inflight import SharedQueries
from scanner.dns.settings import DnsSettings, resolver_addresses
from scanner.dns.shared_udp import SharedSockets, is_loopback
from scanner.dns.stub import (
    EDNS_PAYLOAD,
    NO_EDNS_RCODES,
    build_query,
    quick_nxdomain,
    truncated,
    udp_exchange,
    uses_edns,
    without_edns,
)

log = logging.getLogger("scanner.dns")

ATTEMPT_TIMEOUT = 2.0
"""Seconds before one nameserver is retried or the next one is asked (within the query's
own timeout)."""


MAX_IN_FLIGHT = 100
"""Queries one client has on the wire at once; the rest wait their turn (within their
own time). Toward a resolver that is not on the loopback interface each holds a socket:
unbounded, a few messages with many links exhausted the process's file descriptors
(1,024 under systemd by default) and every further query, and the SMTP connections,
failed. (A loopback resolver's queries share one socket, scanner.dns.shared_udp; the
limit still bounds what one worker asks of it at once.)"""

_MAX_TTL = 2**31 - 1  # dnspython's "no TTL seen"


class Status(enum.Enum):
    """The outcome of one query."""

    OK = "ok"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Answer:
    """Records of one query (dnspython rdata objects) and how it went."""

    status: Status
    records: tuple[Any, ...] = ()

    @property
    def temporary(self) -> bool:
        """A timeout or server failure: the answer is unknown, not negative."""
        return self.status in (Status.TIMEOUT, Status.ERROR)

    @property
    def void(self) -> bool:
        """The name or the type does not exist (RFC 7208's "void lookup")."""
        return self.status in (Status.NXDOMAIN, Status.NODATA)

    def texts(self) -> list[str]:
        """TXT records with their character-strings joined, decoded leniently."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self.records
                if hasattr(r, "strings")]

    def addresses(self) -> list[str]:
        """A/AAAA records as text."""
        return [r.address for r in self.records if hasattr(r, "address")]

    def names(self) -> list[str]:
        """PTR/CNAME/NS targets or MX exchanges as lowercase names without the final dot
        ('' for the root, as in a null MX)."""
        out = []
        for r in self.records:
            target = getattr(r, "exchange", None) or getattr(r, "target", None)
            if target is not None:
                out.append("" if target == dns.name.root
                           else target.to_text(omit_final_dot=True).lower())
        return out


_NO_ANSWER = (Answer(Status.TIMEOUT), 0.0)  # what a time-out gives: answer, TTL
NO_EDNS_MEMORY = 900.0
"""Seconds a resolver that did not understand EDNS0 is asked without it (unbound: 15 min)."""


class DnsClient:
    """Queries through one resolver configuration; safe to share between checks.

    Each query goes to the resolvers in turn over UDP (TCP when the answer is
    truncated; one kept socket per loopback resolver, see :mod:`scanner.dns.shared_udp`,
    a socket per query for any other), ``ATTEMPT_TIMEOUT`` per try, until the query's
    time is up; a resolver that fails (SERVFAIL, REFUSED, unreachable, garbage) is not
    asked again for that query; one that answers FORMERR, NOTIMP or BADVERS to our EDNS0
    query is asked again without EDNS (RFC 6891 section 7), and gets plain queries for the next
    :data:`NO_EDNS_MEMORY` seconds, as unbound remembers such a server. Identical
    queries (name and type) from concurrent askers share one query on the wire
    (:mod:`scanner.dns.inflight`). At most :data:`MAX_IN_FLIGHT` queries are on the wire
    at once. dnspython parses the answers, except a plain NXDOMAIN, which
    :func:`scanner.dns.stub.quick_nxdomain` reads; :func:`scanner.dns.stub.build_query`
    writes the queries of ordinary names, dnspython the rest (see there why)."""

    def __init__(self, servers: list[tuple[str, int]], timeout: float,
                 cache_size: int = 0, share_loopback: bool = True) -> None:
        """``share_loopback=False``: a socket per query for loopback resolvers too
        (the tests run both transports against the same scripted resolvers)."""
        self._servers = servers
        self._timeout = timeout
        self._cache = AnswerCache(cache_size)
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._shared: SharedQueries[tuple[Answer, float]] = SharedQueries()
        self._no_edns: dict[tuple[str, int], float] = {}
        self._loopback = {server for server in servers
                          if share_loopback and is_loopback(server[0])}
        self._sockets = SharedSockets()

    async def query(self, name: str, rdtype: str, deadline: Deadline,
                    timeout: float | None = None) -> Answer:
        """Look ``name`` up; bounded by ``timeout`` (default: configured) and ``deadline``.
        An identical query already on the wire is waited for instead of sent again."""
        key = cache_key(name)
        rdtype = rdtype.upper()
        cached = self._cache.get(key, rdtype)
        if cached is not None:
            return cached
        timeout = timeout or self._timeout
        limit = min(timeout, deadline.remaining())
        if limit <= 0:
            return Answer(Status.TIMEOUT)
        wire = _query_wire(name, rdtype)
        if wire is None:
            return Answer(Status.NXDOMAIN)  # not a valid name: it cannot exist
        answer, ttl = await self._shared.run(
            (key, rdtype), limit,
            lambda left: self._ask_in_turn(wire, name, rdtype, left), _NO_ANSWER)
        self._keep(key, rdtype, answer, ttl)
        return answer

    def _keep(self, key: str, rdtype: str, answer: Answer, ttl: float) -> None:
        """Cache a final answer for its TTL (an NXDOMAIN for every type of the name)."""
        if answer.status is Status.NXDOMAIN:
            self._cache.put(key, ANY_TYPE, answer, min(ttl, MAX_NEGATIVE_TTL))
        elif not answer.temporary:
            self._cache.put(key, rdtype, answer,
                            min(ttl, MAX_NEGATIVE_TTL if answer.void else MAX_TTL))

    async def _ask_in_turn(self, wire: bytes, name: str, rdtype: str,
                           limit: float) -> tuple[Answer, float]:
        """:meth:`_ask` once fewer than :data:`MAX_IN_FLIGHT` queries are on the wire;
        the wait counts against ``limit``."""
        end = time.monotonic() + limit
        slots = self._gate()
        if slots.locked():  # a free slot is taken at once: no timer needed then
            try:
                async with asyncio.timeout(limit):
                    await slots.acquire()
            except TimeoutError:
                return Answer(Status.TIMEOUT), 0.0
        else:
            await slots.acquire()
        try:
            return await self._ask(wire, name, rdtype, max(0.0, end - time.monotonic()))
        finally:
            slots.release()

    def _gate(self) -> asyncio.Semaphore:
        """The in-flight limit of the running event loop (one per worker; tests run
        several loops one after another)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots, self._slots_loop = asyncio.Semaphore(MAX_IN_FLIGHT), loop
        return self._slots

    async def _ask(self, wire: bytes, name: str, rdtype: str,
                   limit: float) -> tuple[Answer, float]:
        """Ask the resolvers in turn until one answers or ``limit`` seconds are gone."""
        end = time.monotonic() + limit
        usable = list(self._servers)
        while usable:
            for server in list(usable):
                left = end - time.monotonic()
                if left <= 0:
                    log.debug("DNS %s %s: timeout after %.2f s", name, rdtype, limit)
                    return Answer(Status.TIMEOUT), 0.0
                try:
                    outcome = await self._once(wire, server, left)
                except (OSError, EOFError, dns.exception.DNSException) as exc:
                    log.debug("DNS %s %s at %s:%d: %s", name, rdtype, *server, exc)
                    usable.remove(server)
                    continue
                if outcome is not None:
                    return outcome
        log.debug("DNS %s %s: every resolver failed", name, rdtype)
        return Answer(Status.ERROR), 0.0

    async def _once(self, wire: bytes, server: tuple[str, int], left: float
                    ) -> tuple[Answer, float] | None:
        """One try at one resolver: the answer and how long to keep it, None after a
        timeout; an exception when the resolver failed. UDP and a TCP retry together
        take at most ``left`` seconds."""
        end = time.monotonic() + left
        if uses_edns(wire) and self._no_edns.get(server, 0.0) > time.monotonic():
            wire = without_edns(wire)  # it did not understand EDNS0 lately
        attempt = min(ATTEMPT_TIMEOUT, left)
        if server in self._loopback:  # one socket for all (scanner.dns.shared_udp)
            reply = await self._sockets.get(server).exchange(wire, attempt)
        else:
            reply = await udp_exchange(wire, server, attempt)
        if reply is None:
            return None
        ttl = quick_nxdomain(wire, reply)
        if ttl is not None:
            return Answer(Status.NXDOMAIN), ttl
        request = dns.message.from_wire(wire)
        if truncated(reply):
            response = await dns.asyncquery.tcp(request, server[0], port=server[1],
                                                timeout=max(0.0, end - time.monotonic()))
        else:
            response = dns.message.from_wire(reply)
        if not request.is_response(response):
            raise dns.exception.FormError("the reply does not answer the question")
        rcode = response.rcode()
        if rcode in NO_EDNS_RCODES and uses_edns(wire):  # RFC 6891 section 7
            log.debug("DNS at %s:%d: %s to EDNS0; asking without it", *server,
                      dns.rcode.to_text(rcode))
            got = await self._once(without_edns(wire), server, end - time.monotonic())
            if got is not None:  # it answers plain queries: ask it so for a while
                self._no_edns[server] = time.monotonic() + NO_EDNS_MEMORY
            return got
        if rcode == dns.rcode.NXDOMAIN:
            return Answer(Status.NXDOMAIN), negative_ttl(response)
        if rcode != dns.rcode.NOERROR:
            raise dns.exception.DNSException(dns.rcode.to_text(rcode))
        chain = response.resolve_chaining()
        wanted = request.question[0].rdtype
        records = tuple(r for r in chain.answer or () if r.rdtype == wanted)
        status = Status.OK if records else Status.NODATA
        # no SOA with a NODATA leaves dnspython's maximum: keep nothing (RFC 2308)
        ttl = float(chain.minimum_ttl) if chain.minimum_ttl < _MAX_TTL else 0.0
        return Answer(status, records), ttl


def _query_wire(name: str, rdtype: str) -> bytes | None:
    """The query packet for ``name``/``rdtype`` (our builder, dnspython for unusual
    names), or None when the name is invalid and so cannot exist."""
    code = _rdtype_code(rdtype)
    wire = build_query(name, code)
    if wire is not None:
        return wire
    try:
        return dns.message.make_query(dns.name.from_text(name), code, use_edns=0,
                                      payload=EDNS_PAYLOAD).to_wire()
    except (dns.exception.DNSException, ValueError):
        return None


@functools.lru_cache(maxsize=64)
def _rdtype_code(rdtype: str) -> int:
    return int(dns.rdatatype.from_text(rdtype))


_clients: dict[tuple[Any, ...], DnsClient] = {}


def get_client(settings: DnsSettings, where: str = "dns", source: str = "<defaults>"
               ) -> DnsClient:
    """The process's client for these resolvers (created on first use; ConfigError on a
    bad resolver). ``where`` is the settings' key path, for error messages."""
    servers = resolver_addresses(settings, where, source)
    key = (tuple(servers), settings.cache_size, settings.timeout)
    client = _clients.get(key)
    if client is None:
        client = DnsClient(servers or _system_servers(), settings.timeout,
                           settings.cache_size)
        _clients[key] = client
    return client


def _system_servers() -> list[tuple[str, int]]:
    """The resolvers of /etc/resolv.conf (127.0.0.1 when it lists none)."""
    try:
        resolver = dns.resolver.Resolver()
    except dns.resolver.NoResolverConfiguration:
        log.warning("no usable /etc/resolv.conf; DNS goes to 127.0.0.1")
        return [("127.0.0.1", 53)]
    found = []
    for server in resolver.nameservers:
        if isinstance(server, str):
            found.append((server, resolver.port))
        elif isinstance(server, dns.nameserver.Do53Nameserver):
            found.append((server.address, server.port))
    return found or [("127.0.0.1", 53)]

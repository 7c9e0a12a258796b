"""An async DNS client over dnspython: typed answers, per-query timeouts, shared cache.

A query never raises for DNS trouble: it returns an :class:`Answer` whose
:class:`Status` says what happened (OK, NXDOMAIN, NODATA, TIMEOUT, ERROR). TIMEOUT and
ERROR are the temporary outcomes callers turn into ``*_TEMPFAIL`` results.

The cache (:mod:`scanner.dns.cache`) keeps final answers, positive and negative, for
their TTLs in front of dnspython. :func:`get_client` keeps one client per resolver
configuration in the process, so every check using the same resolvers shares one cache.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from scanner.dns.budget import Deadline
from scanner.dns.cache import ANY_TYPE, AnswerCache, cache_key, negative_ttl
from scanner.dns.settings import DnsSettings, resolver_addresses

log = logging.getLogger("scanner.dns")

ATTEMPT_TIMEOUT = 2.0
"""Seconds before one nameserver is retried or the next one is asked (within the query's
own timeout)."""


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


class DnsClient:
    """Queries through one resolver configuration; safe to share between checks."""

    def __init__(self, resolver: dns.asyncresolver.Resolver, timeout: float,
                 cache_size: int = 0) -> None:
        self._resolver = resolver
        self._timeout = timeout
        self._cache = AnswerCache(cache_size)

    @property
    def resolver(self) -> dns.asyncresolver.Resolver:
        return self._resolver

    async def query(self, name: str, rdtype: str, deadline: Deadline,
                    timeout: float | None = None) -> Answer:
        """Look ``name`` up; bounded by ``timeout`` (default: configured) and ``deadline``."""
        key = cache_key(name)
        rdtype = rdtype.upper()
        cached = self._cache.get(key, rdtype)
        if cached is not None:
            return cached
        limit = min(timeout or self._timeout, deadline.remaining())
        if limit <= 0:
            return Answer(Status.TIMEOUT)
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError):
            return Answer(Status.NXDOMAIN)  # not a valid name: it cannot exist
        try:
            answer = await self._resolver.resolve(qname, rdtype, lifetime=limit,
                                                  raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN as exc:
            result = Answer(Status.NXDOMAIN)
            self._cache.put(key, ANY_TYPE, result, negative_ttl(_nxdomain_response(exc)))
            return result
        except dns.exception.Timeout:
            log.debug("DNS %s %s: timeout after %.2f s", name, rdtype, limit)
            return Answer(Status.TIMEOUT)
        except (dns.resolver.NoNameservers, dns.resolver.YXDOMAIN,
                dns.resolver.NoResolverConfiguration) as exc:
            log.debug("DNS %s %s: %s", name, rdtype, exc)
            return Answer(Status.ERROR)
        except dns.exception.DNSException as exc:
            log.debug("DNS %s %s: %s", name, rdtype, exc)
            return Answer(Status.ERROR)
        except OSError as exc:  # no route, no socket: the network is down
            log.debug("DNS %s %s: %s", name, rdtype, exc)
            return Answer(Status.ERROR)
        if answer.rrset is None:
            result = Answer(Status.NODATA)
        else:
            wanted = dns.rdatatype.from_text(rdtype)
            records = tuple(r for r in answer.rrset if r.rdtype == wanted)
            result = Answer(Status.OK, records) if records else Answer(Status.NODATA)
        self._cache.put(key, rdtype, result, answer.expiration - time.time())
        return result


def _nxdomain_response(exc: dns.resolver.NXDOMAIN) -> Any:
    """The response that said NXDOMAIN for the name asked (None if not at hand)."""
    try:
        responses = exc.responses()
    except (AttributeError, KeyError, TypeError):
        return None
    return next(iter(responses.values()), None) if responses else None


_clients: dict[tuple[Any, ...], DnsClient] = {}


def get_client(settings: DnsSettings, where: str = "dns", source: str = "<defaults>"
               ) -> DnsClient:
    """The process's client for these resolvers (created on first use; ConfigError on a
    bad resolver). ``where`` is the settings' key path, for error messages."""
    servers = resolver_addresses(settings, where, source)
    key = (tuple(servers), settings.cache_size, settings.timeout)
    client = _clients.get(key)
    if client is None:
        client = DnsClient(_make_resolver(servers), settings.timeout, settings.cache_size)
        _clients[key] = client
    return client


def _make_resolver(servers: list[tuple[str, int]]) -> dns.asyncresolver.Resolver:
    if servers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in servers]
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            log.warning("no usable /etc/resolv.conf; DNS goes to 127.0.0.1")
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
    resolver.timeout = ATTEMPT_TIMEOUT
    resolver.lifetime = 30.0
    resolver.retry_servfail = False
    resolver.use_edns(0, 0, 1232)
    return resolver  # no dnspython cache: DnsClient keeps final answers itself

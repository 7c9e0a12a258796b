"""uribl: domains of the URLs in the body on URI blacklists (SURBL-style lookups).

Host names found in the decoded text and HTML (:mod:`scanner.auth.urls`; the text of an
HTML part is the rules' rendering of it, made once for both), then in the Subject, are
reduced to their registered domain with the public suffix list (``www.shop.example.co.uk`` ->
``example.co.uk``) and looked up as ``DOMAIN.ZONE``; IP-address hosts as reversed
octets on lists with ``ips = true``, except addresses no public link can reach
(:data:`scanner.dns.reverse.NOT_PUBLIC`, shared with dnsbl; as
SpamAssassin skips them: ``http://127.0.0.2/`` would hit every list's test entry).
All lookups run concurrently under the ``dns.budget``. Refusal answers give
``URIBL_BLOCKED``, as does a list that lists its RFC 5782 must-not-list test point
``INVALID`` (or 127.0.0.1 for an IP-only list; :mod:`scanner.dns.health`); timeouts
``URIBL_TEMPFAIL``.

Off by default for the same reasons as dnsbl: usage terms and public-resolver blocking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from decoders.mimeutil import decode_words
from scanner.auth.psl import normalise, org_domain
from scanner.auth.urls import Found, from_parts, from_text
from scanner.checks.base import CheckContext
from scanner.config.schema import opt
from scanner.dns import Deadline, DnsSettings, get_client
from scanner.dns.blocked import DEFAULT_BLOCKED, warn_failed, warn_refused
from scanner.dns.health import WILDCARD, ListHealth
from scanner.dns.lists import CodeMap, build_codemap
from scanner.dns.reverse import is_public, list_query
from scanner.pipeline.parse import header_text
from scanner.policy.effective import any_bank_in
from scanner.rules.views import html_text
from scanner.task import Hit, Task
from scanner.throttle import LogThrottle

log = logging.getLogger("scanner.uribl")

@dataclass(frozen=True, slots=True)
class UriblList:
    """One URI blacklist ([[checks.settings.uribl.lists]])."""

    zone: str = opt("", "the list's DNS zone, e.g. dbl.spamhaus.org")
    symbol: str = opt("", "symbol for a listing answer that codes/bitmask do not name")
    codes: Mapping[str, str] = opt({}, "answer address -> symbol")
    bitmask: Mapping[str, str] = opt({}, "bit of the answer's last octet -> symbol")
    blocked: tuple[str, ...] = opt(list(DEFAULT_BLOCKED),
                                   "answers meaning 'query refused' (never a listing)")
    domains: bool = opt(True, "look up registered domains")
    ips: bool = opt(False, "look up IP-address URL hosts (reversed octets)")


DEFAULT_LISTS = [
    UriblList(zone="dbl.spamhaus.org", codes={
        "127.0.1.2": "URIBL_DBL_SPAM", "127.0.1.4": "URIBL_DBL_PHISH",
        "127.0.1.5": "URIBL_DBL_MALWARE", "127.0.1.6": "URIBL_DBL_BOTNETCC",
        "127.0.1.102": "URIBL_DBL_ABUSED", "127.0.1.103": "URIBL_DBL_ABUSED",
        "127.0.1.104": "URIBL_DBL_PHISH", "127.0.1.105": "URIBL_DBL_MALWARE",
        "127.0.1.106": "URIBL_DBL_BOTNETCC"},
        blocked=["127.255.255.0/24", "127.0.1.255/32"]),
    UriblList(zone="multi.uribl.com", bitmask={
        "2": "URIBL_BLACK", "4": "URIBL_GREY", "8": "URIBL_RED"},
        blocked=["127.0.0.1/32", "127.255.255.0/24"]),
    UriblList(zone="multi.surbl.org", ips=True, bitmask={
        "8": "URIBL_SURBL_PH", "16": "URIBL_SURBL_MW", "64": "URIBL_SURBL_ABUSE",
        "128": "URIBL_SURBL_CR"},
        blocked=["127.0.0.1/32", "127.255.255.0/24"]),
]


@dataclass(frozen=True, slots=True)
class UriblSettings:
    """Settings of the uribl check ([checks.settings.uribl])."""

    dns: DnsSettings = opt(DnsSettings, "resolvers, timeouts and cache")
    lists: tuple[UriblList, ...] = opt(DEFAULT_LISTS, "the lists to query")
    max_domains: int = opt(20, "distinct domains (and IPs) looked up per message, in order "
                           "of appearance", min=1, max=500)
    skip_domains: tuple[str, ...] = opt(
        [], "registered domains never looked up (your own, big senders' link domains)")
    skip_policy_banks: tuple[str, ...] = opt([], "policy banks whose mail is not looked up")
    psl_file: str = opt("", "public suffix list file; empty = the packaged copy")


def link_hosts(task: Task) -> Found:
    """Hosts and IP addresses of the links in the body (:func:`scanner.auth.urls.from_parts`
    with the rules' rendering of HTML), then in the Subject (shown with the message; read
    as SpamAssassin reads it, after the body), in order of appearance."""
    found = from_parts(task.parts, html_text)
    subject = decode_words(header_text(task.message, "Subject"))
    if subject:
        from_text(subject, found)
    return found


class Uribl:
    """URL domains on URI blacklists."""

    name: ClassVar[str] = "uribl"
    description: ClassVar[str] = "Domains of URLs in the body on URI blacklists"
    symbols: ClassVar[dict[str, str]] = {
        "URIBL_BLOCKED": "a list refused our query (public resolver, quota) or lists everything",
        "URIBL_TEMPFAIL": "a list could not be queried in time (DNS)",
        **{s: "a URL domain is on a configured URI blacklist" for lst in DEFAULT_LISTS
           for s in (lst.symbol, *lst.codes.values(), *lst.bitmask.values()) if s},
    }
    default_enabled: ClassVar[bool] = False
    kind: ClassVar[str] = "spam"
    autolearn_area: ClassVar[str] = "body"
    """Where its points count for autolearning (as in SpamAssassin: URI list hits are body
    tests)."""
    Settings: ClassVar[type] = UriblSettings

    def __init__(self, settings: UriblSettings, context: CheckContext) -> None:
        cfg, where = context.config, "checks.settings.uribl"
        self._s = settings
        self._dns = get_client(settings.dns, f"{where}.dns", cfg.source)
        # a blocked or unreachable list hits every message: log it once per zone per 10 min
        self._refusals = LogThrottle(600.0)
        self._health = ListHealth(self._dns, log, "URIBL")
        self._lists: list[tuple[UriblList, CodeMap]] = [
            (lst, build_codemap(lst.zone, lst.symbol, lst.codes, lst.bitmask, lst.blocked,
                                f"{where}.lists[{i}]", cfg.source))
            for i, lst in enumerate(settings.lists)]
        self._skip_domains = {normalise(d.strip(".")) for d in settings.skip_domains}
        self._skip_banks = {b.upper() for b in settings.skip_policy_banks}

    def targets(self, task: Task) -> tuple[list[str], list[str]]:
        """(registered domains, IP addresses) to look up, at most ``max_domains`` in all."""
        found = link_hosts(task)
        limit = self._s.max_domains
        domains: dict[str, None] = {}  # ordered and O(1) "in": 10,000 links stay linear
        for host in found.hosts:
            if len(domains) >= limit:
                break
            domain = org_domain(host, self._s.psl_file)
            if domain and "." in domain and domain not in self._skip_domains:
                domains[domain] = None
        ips = [ip for ip in found.ips if is_public(ip)]
        return list(domains), ips[: max(0, limit - len(domains))]

    async def run(self, task: Task) -> Iterable[Hit]:
        if any_bank_in(task.policy_bank, self._skip_banks) or not self._lists:
            return []
        domains, ips = self.targets(task)
        jobs: list[tuple[CodeMap, str, str]] = []
        for lst, codes in self._lists:
            if lst.domains:
                jobs += [(codes, d, f"{d}.{codes.zone}") for d in domains]
            if lst.ips:
                jobs += [(codes, ip, list_query(ip, codes.zone)) for ip in ips
                         if ":" not in ip]
        if not jobs:
            return []
        deadline = Deadline(self._s.dns.budget)
        query = partial(self._dns.query, deadline=deadline)
        asked = {codes.zone for codes, _, _ in jobs}
        probes = [(codes, "domain" if lst.domains and domains else "ipv4")
                  for lst, codes in self._lists if codes.zone in asked]
        answers, wild = await self._health.with_lookups(
            asyncio.gather(*(query(name, "A") for _, _, name in jobs)), probes, deadline)
        dead = [c.zone for (c, _), bad in zip(probes, wild, strict=True) if bad]
        listed: dict[str, list[str]] = {}
        blocked: list[str] = []
        failed: list[str] = []
        for (codes, target, _), answer in zip(jobs, answers, strict=True):
            if answer.temporary:
                if codes.zone not in failed:
                    failed.append(codes.zone)
                continue
            found, refused = codes.read(answer.addresses())
            blocked += [f"{codes.zone}={c}" for c in refused if f"{codes.zone}={c}" not in blocked]
            if codes.zone in dead:
                continue
            for symbol, _ in found:
                listed.setdefault(symbol, [])
                if target not in listed[symbol]:
                    listed[symbol].append(target)
        hits = [Hit(symbol, options=tuple(targets)) for symbol, targets in listed.items()]
        if blocked:
            warn_refused(log, self._refusals, "URIBL", task.log_id, blocked)
        if dead:
            self._health.warn(task.log_id, dead)
            blocked += [f"{zone}={WILDCARD}" for zone in dead]
        if blocked:
            hits.append(Hit("URIBL_BLOCKED", options=tuple(blocked)))
        if failed:
            warn_failed(log, self._refusals, "URIBL", task.log_id, failed)
            hits.append(Hit("URIBL_TEMPFAIL", options=tuple(failed)))
        return hits

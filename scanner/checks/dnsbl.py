"""dnsbl: the connecting client's IP address on DNS blacklists (IPv4 and IPv6).

Per list, the ``scope`` says which relays of the Received chain
(:mod:`scanner.auth.received`) are looked up: ``untrusted``, the first untrusted relay
(XFORWARD, else the chain); ``last-external``, the first relay outside
internal_networks with a public address, unless it is trusted (SpamAssassin's
``-lastexternal``); ``all-untrusted``, every
untrusted relay with a public address and the untrusted originating addresses
(X-Originating-IP and the like), as SpamAssassin's ``check_rbl`` without a suffix does,
at most ``max_relays`` of them (SpamAssassin's ``num_check_received``, 9), the first
untrusted relay always among them (SpamAssassin keeps the oldest nine, so 200 forged
Received headers would push the real client out); ``first-trusted``, the first untrusted
relay with a public address (SpamAssassin's ``-firsttrusted``, whitelists' scope: the
host our trusted relay itself received the message from); ``not-first-hop``, every
external relay with a public address but the oldest (SpamAssassin's ``-notfirsthop``,
for lists of dial-up space: the sender's own host is expected there). One name is
queried once even when two lists of the same zone (ZEN's SBL and XBL parts) ask for it,
and a symbol counts once however many relays are listed. Every query runs concurrently under the
``dns.budget``.
A list that answers with a refusal code (public resolver, over quota) gives
``DNSBL_BLOCKED``, never a listing, and so does a list that lists its RFC 5782
must-not-list test point 127.0.0.1 (:mod:`scanner.dns.health`); a timeout gives
``DNSBL_TEMPFAIL`` (weight 0).

Off by default: public lists have usage terms and refuse queries that arrive through
big public resolvers, so they need a local caching resolver (``unbound``) and a
decision by the operator. The shipped list set is a sensible start once enabled.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import ClassVar

from scanner.auth.received import (
    RelayChain,
    chain_networks,
    in_networks,
    msa_networks_option,
    task_chain,
)
from scanner.checks.base import CheckContext
from scanner.config.schema import opt
from scanner.dns import Deadline, DnsSettings, get_client
from scanner.dns.blocked import DEFAULT_BLOCKED, warn_failed, warn_refused
from scanner.dns.health import WILDCARD, ListHealth
from scanner.dns.lists import CodeMap, build_codemap
from scanner.dns.reverse import is_public, list_query
from scanner.policy.effective import any_bank_in
from scanner.task import Hit, Task
from scanner.throttle import LogThrottle

log = logging.getLogger("scanner.dnsbl")

SCOPES = ("untrusted", "last-external", "all-untrusted", "first-trusted", "not-first-hop")


@dataclass(frozen=True, slots=True)
class DnsblList:
    """One IP blacklist ([[checks.settings.dnsbl.lists]])."""

    zone: str = opt("", "the list's DNS zone, e.g. zen.spamhaus.org")
    symbol: str = opt("", "symbol for a listing answer that codes/bitmask do not name")
    codes: Mapping[str, str] = opt({}, "answer address -> symbol")
    bitmask: Mapping[str, str] = opt({}, "bit of the answer's last octet -> symbol")
    blocked: tuple[str, ...] = opt(list(DEFAULT_BLOCKED),
                                   "answers meaning 'query refused' (never a listing)")
    ipv4: bool = opt(True, "look up IPv4 clients")
    ipv6: bool = opt(False, "look up IPv6 clients (only for lists that carry IPv6)")
    scope: str = opt("untrusted", "untrusted: the first untrusted relay; last-external: "
                     "the first relay outside internal_networks; all-untrusted: every "
                     "untrusted relay (at most max_relays), as SpamAssassin's check_rbl "
                     "without a suffix; first-trusted: the first untrusted relay with a "
                     "public address (SpamAssassin's -firsttrusted, for whitelists of "
                     "senders); not-first-hop: every external relay but the oldest "
                     "(SpamAssassin's -notfirsthop, for lists of dial-up space)",
                     choices=SCOPES)


# SpamAssassin's scopes (20_dnsbl_tests.cf, 72_active.cf): SBL and SpamCop for every
# untrusted relay, XBL, PBL and PSBL for the last external one
DEFAULT_LISTS = [
    DnsblList(zone="zen.spamhaus.org", ipv6=True, scope="all-untrusted", codes={
        "127.0.0.2": "RCVD_IN_SBL", "127.0.0.3": "RCVD_IN_SBL_CSS",
        "127.0.0.9": "RCVD_IN_SBL"}),
    DnsblList(zone="zen.spamhaus.org", ipv6=True, scope="last-external", codes={
        "127.0.0.4": "RCVD_IN_XBL", "127.0.0.5": "RCVD_IN_XBL", "127.0.0.6": "RCVD_IN_XBL",
        "127.0.0.7": "RCVD_IN_XBL", "127.0.0.10": "RCVD_IN_PBL",
        "127.0.0.11": "RCVD_IN_PBL"}),
    DnsblList(zone="bl.spamcop.net", symbol="RCVD_IN_SPAMCOP", scope="all-untrusted"),
    DnsblList(zone="psbl.surriel.com", symbol="RCVD_IN_PSBL", scope="last-external"),
]


@dataclass(frozen=True, slots=True)
class DnsblSettings:
    """Settings of the dnsbl check ([checks.settings.dnsbl])."""

    dns: DnsSettings = opt(DnsSettings, "resolvers, timeouts and cache")
    lists: tuple[DnsblList, ...] = opt(DEFAULT_LISTS, "the lists to query")
    trusted_networks: tuple[str, ...] = opt(
        [], "relays whose Received headers are believed; empty = [policy] mynetworks")
    internal_networks: tuple[str, ...] = opt(
        [], "our own MX/relays (also trusted); empty = trusted_networks")
    msa_networks: tuple[str, ...] = msa_networks_option()
    trust_authenticated: bool = opt(True, "an authenticated hop (ESMTPA) counts as trusted")
    skip_policy_banks: tuple[str, ...] = opt(["ORIGINATING"],
                                             "policy banks whose mail is not looked up")
    skip_local: bool = opt(True, "never look up loopback, private and link-local addresses")
    max_relays: int = opt(9, "relays an all-untrusted list looks up at most (the first "
                          "untrusted one always among them; SpamAssassin's "
                          "num_check_received)", min=1, max=50)


class Dnsbl:
    """Client IP on DNS blacklists."""

    name: ClassVar[str] = "dnsbl"
    description: ClassVar[str] = "Client IP address on DNS blacklists"
    symbols: ClassVar[dict[str, str]] = {
        "DNSBL_BLOCKED": "a list refused our query (public resolver, quota) or lists everything",
        "DNSBL_TEMPFAIL": "a list could not be queried in time (DNS)",
        **{s: "listed on a configured DNS blacklist" for lst in DEFAULT_LISTS
           for s in (lst.symbol, *lst.codes.values()) if s},
    }
    default_enabled: ClassVar[bool] = False
    kind: ClassVar[str] = "spam"
    autolearn_area: ClassVar[str] = "header"
    """Where its points count for autolearning (as in SpamAssassin: DNS list hits are header
    tests)."""
    Settings: ClassVar[type] = DnsblSettings

    def __init__(self, settings: DnsblSettings, context: CheckContext) -> None:
        cfg, where = context.config, "checks.settings.dnsbl"
        self._s = settings
        self._dns = get_client(settings.dns, f"{where}.dns", cfg.source)
        # a blocked or unreachable list hits every message: log it once per zone per 10 min
        self._refusals = LogThrottle(600.0)
        self._health = ListHealth(self._dns, log, "DNSBL")
        self._lists: list[tuple[DnsblList, CodeMap]] = [
            (lst, build_codemap(lst.zone, lst.symbol, lst.codes, lst.bitmask, lst.blocked,
                                f"{where}.lists[{i}]", cfg.source))
            for i, lst in enumerate(settings.lists)]
        self._zones = _zone_codes([codes for _, codes in self._lists])
        self._nets = chain_networks(settings, cfg.policy.mynetworks, where, cfg.source)
        self._skip = {b.upper() for b in settings.skip_policy_banks}

    async def run(self, task: Task) -> Iterable[Hit]:
        if any_bank_in(task.policy_bank, self._skip) or not self._lists:
            return []
        nets = self._nets
        chain = task_chain(task, nets.trusted, nets.internal, self._s.trust_authenticated,
                           nets.msa)
        jobs = self._jobs(chain)
        if not jobs:
            return []
        names = list(dict.fromkeys((c.zone, ip) for c, ip in jobs))  # each name once
        probes = list(dict.fromkeys((c.zone, "ipv6" if ":" in ip else "ipv4")
                                    for c, ip in jobs))  # one per zone and family
        deadline = Deadline(self._s.dns.budget)
        query = partial(self._dns.query, deadline=deadline)
        replies, wild = await self._health.with_lookups(
            asyncio.gather(*(query(list_query(ip, zone), "A") for zone, ip in names)),
            [(self._zones[zone], kind) for zone, kind in probes], deadline)
        by_name = dict(zip(names, replies, strict=True))
        answers = [by_name[(c.zone, ip)] for c, ip in jobs]
        dead = list(dict.fromkeys(zone for (zone, _), bad in zip(probes, wild, strict=True)
                                  if bad))
        hits: list[Hit] = []
        blocked: list[str] = []
        failed: list[str] = []
        for (codes, ip), answer in zip(jobs, answers, strict=True):
            if answer.temporary:
                failed.append(codes.zone)
                continue
            listed, refused = codes.read(answer.addresses())
            blocked += [f"{codes.zone}={code}" for code in refused]
            if codes.zone not in dead:
                hits += [Hit(symbol, options=(ip, codes.zone, code)) for symbol, code in listed
                         if all(h.symbol != symbol for h in hits)]  # once per symbol
        blocked = list(dict.fromkeys(blocked))
        failed = list(dict.fromkeys(failed))
        if blocked:
            warn_refused(log, self._refusals, "DNSBL", task.log_id, blocked)
        if dead:
            self._health.warn(task.log_id, dead)
            blocked += [f"{zone}={WILDCARD}" for zone in dead]
        if blocked:
            hits.append(Hit("DNSBL_BLOCKED", options=tuple(blocked)))
        if failed:
            warn_failed(log, self._refusals, "DNSBL", task.log_id, failed)
            hits.append(Hit("DNSBL_TEMPFAIL", options=tuple(failed)))
        return hits

    def _jobs(self, chain: RelayChain) -> list[tuple[CodeMap, str]]:
        """(list, address) pairs to look up, by each list's scope."""
        origin = chain.origin()
        if origin.first_untrusted is None:
            return []
        scopes = {"untrusted": [origin.first_untrusted.ip],
                  "last-external": self._last_external(chain),
                  "all-untrusted": list(dict.fromkeys(
                      [origin.first_untrusted.ip, *(r.ip for r in chain.untrusted)])),
                  "first-trusted": self._first_trusted(chain),
                  "not-first-hop": self._not_first_hop(chain)}
        jobs: list[tuple[CodeMap, str]] = []
        for lst, codes in self._lists:
            ips = [ip for ip in scopes[lst.scope] if self._wanted(ip, lst)]
            jobs += [(codes, ip) for ip in ips[:self._s.max_relays]]
        return jobs

    def _last_external(self, chain: RelayChain) -> list[str]:
        """SpamAssassin's ``-lastexternal``: the first external address that is not
        local, unless it lies in trusted_networks (``_check_rbl_backend``)."""
        return self._untrusted_start(self._not_local(r.ip for r in chain.external)[:1])

    def _first_trusted(self, chain: RelayChain) -> list[str]:
        """SpamAssassin's ``-firsttrusted``: the first untrusted address (relays, then
        originating addresses) that is not local, unless it lies in trusted_networks
        (``_check_rbl_backend`` in Plugin/DNSEval.pm)."""
        return self._untrusted_start(self._not_local(r.ip for r in chain.untrusted)[:1])

    def _not_first_hop(self, chain: RelayChain) -> list[str]:
        """SpamAssassin's ``-notfirsthop``: the external addresses (trusted ones outside
        internal_networks, then the untrusted ones) that are not local, the oldest left
        out unless it is the only one; at most max_relays, the first ones in
        trusted_networks left out (``_check_rbl_backend`` in Plugin/DNSEval.pm)."""
        ips = self._not_local(r.ip for r in chain.external)
        if len(ips) > 1:
            ips.pop()
        return self._untrusted_start(ips[:self._s.max_relays])

    def _not_local(self, ips: Iterable[str]) -> list[str]:
        """``ips`` once each, local ones left out with ``skip_local`` (SpamAssassin's
        ``ip_list_uniq_and_strip_private``, before a scope picks its relays)."""
        return [ip for ip in dict.fromkeys(ips) if not self._s.skip_local or is_public(ip)]

    def _untrusted_start(self, ips: list[str]) -> list[str]:
        """``ips`` from the first one outside the trusted networks (SpamAssassin looks
        up a trusted relay only for a ``nice`` rule, a whitelist)."""
        nets = [*self._nets.trusted, *self._nets.internal]
        while ips and in_networks(ips[0], nets):
            ips = ips[1:]
        return ips

    def _wanted(self, ip: str, lst: DnsblList) -> bool:
        version = _ip_version(ip)
        if (version == 4 and not lst.ipv4) or (version == 6 and not lst.ipv6):
            return False
        return not self._s.skip_local or is_public(ip)


@functools.lru_cache(maxsize=4096)  # every list asks it of the same relays
def _ip_version(ip: str) -> int:
    """4 or 6; ValueError for no address (not cached)."""
    return ipaddress.ip_address(ip).version


def _zone_codes(maps: list[CodeMap]) -> dict[str, CodeMap]:
    """Per zone, every code its lists name (ZEN's SBL and XBL parts are two lists): the
    health probe's answer is a listing if any list of the zone would count it."""
    out: dict[str, CodeMap] = {}
    for codes in maps:
        seen = out.get(codes.zone)
        out[codes.zone] = codes if seen is None else replace(
            seen, symbol=seen.symbol or codes.symbol, codes={**codes.codes, **seen.codes},
            bitmask={**codes.bitmask, **seen.bitmask},
            blocked=tuple(dict.fromkeys((*seen.blocked, *codes.blocked))))
    return out

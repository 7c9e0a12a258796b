"""Received-header reading for the classifier: who handed the message to our site.

A Received header is written by the receiving host; only its ``from`` clause describes
the sender side, and the ``by`` clause names our own (or a collector's) relay, which is a
label leak in training corpora and noise in production. So only ``from`` clauses are used.

Hops added inside the receiving site (loopback, private addresses, and host names under
the model's ``internal_hosts`` suffixes) are skipped. The first external hop is the
*client* — what Postfix passes as XFORWARD NAME/ADDR; when the caller knows the XFORWARD
client, that replaces the guess. Deeper hops are *relays* (forged easily, weighted low).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
_IPV6 = re.compile(r"(?i)\[(?:ipv6:)?([0-9a-f:]*:[0-9a-f:.]+)\]")
_HOSTNAME = re.compile(r"(?i)(?<![\w.-])((?:[a-z0-9_-]+\.)+[a-z][a-z0-9-]*)(?![\w-])")
_RDNS_IN_PARENS = re.compile(r"\(([^()\[\]\s]+)\s*\[")
_FROM_CLAUSE = re.compile(r"(?is)^\s*from\s+(.*?)(?:\s+by\s|\s+with\s|;|$)")
_DYNAMIC = re.compile(
    r"(?i)(?:\d{1,3}[-.]\d{1,3}[-.]\d{1,3}|dsl|dyn|dial|pool|ppp|cable|dhcp|client|"
    r"broadband|customer|static|host\d|user\d|\bip\d)"
)
_RETRIEVAL = re.compile(r"(?i)\bwith\s+(?:imaps?|pop3?s?|lmtp)\b|\(fetchmail")
_PRIVATE_NETS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))
_SLD = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "ltd",
                  "plc", "gob", "mil", "nom", "sch", "gen"})


@dataclass(frozen=True, slots=True)
class Hop:
    """The sender side of one Received header."""

    host: str  # reverse-DNS name if the receiver recorded one, else the HELO name, or ""
    addr: str  # IP address as text, or ""
    helo: str  # the name the sender gave, or ""


@lru_cache(maxsize=8192)  # pure; the same relays and domains recur from message to message
def registered_domain(host: str) -> str:
    """A cheap registered-domain guess: last two labels, three under ``co.uk``-like SLDs."""
    labels = [p for p in host.lower().strip(".").split(".") if p]
    if len(labels) <= 2:
        return ".".join(labels)
    if len(labels[-1]) == 2 and labels[-2] in _SLD:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def parse_hop(received: str) -> Hop | None:
    """Read the ``from`` clause of one Received header, or ``None`` if it has none."""
    match = _FROM_CLAUSE.match(received)
    if match is None:
        return None
    clause = match.group(1)
    addr = ""
    ipv4 = _IPV4.search(clause)
    if ipv4:
        addr = ipv4.group(1)
    else:
        ipv6 = _IPV6.search(clause)
        if ipv6:
            addr = ipv6.group(1)
    names = [n.lower() for n in _HOSTNAME.findall(clause) if not _IPV4.fullmatch(n)]
    helo = clause.split(None, 1)[0].strip("[]()").lower() if clause.split() else ""
    # "from HELO (rdns [ip])": the rdns is the name inside the parentheses.
    inside = _RDNS_IN_PARENS.search(clause)
    host = inside.group(1).lower() if inside else (names[0] if names else "")
    if host.startswith("[") or _IPV4.fullmatch(host or ""):
        host = ""
    return Hop(host=host.strip("."), addr=addr, helo=helo)


@lru_cache(maxsize=8192)  # pure; ipaddress parsing is slow Python
def is_private_addr(addr: str) -> bool:
    """True for loopback, RFC 1918 / ULA, shared (CGNAT), link-local and unparsable addresses.

    Documentation ranges (TEST-NET) count as public here, unlike ``ipaddress.is_private``.
    """
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return True
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
        return True
    return any(ip in net for net in _PRIVATE_NETS if net.version == ip.version)


def is_internal(hop: Hop, internal_hosts: tuple[str, ...]) -> bool:
    """True when the hop is inside the receiving site (skip it)."""
    if hop.addr and is_private_addr(hop.addr):
        return True
    names = (hop.host, hop.helo)
    for name in names:
        if name in ("localhost", "localhost.localdomain"):
            return True
        for suffix in internal_hosts:
            if name == suffix or name.endswith("." + suffix):
                return True
    return not hop.addr and not hop.host


def external_hops(received: list[str], internal_hosts: tuple[str, ...]) -> list[Hop]:
    """The sender-side hops below the receiving site, nearest first.

    A hop recorded as a mailbox retrieval or local delivery (``with IMAP``, ``POP3``,
    ``LMTP``, fetchmail) is the recipient's own plumbing and never the sender.
    """
    hops: list[Hop] = []
    inside = True
    for header in received:
        hop = parse_hop(header)
        if hop is None:
            continue
        if inside and (is_internal(hop, internal_hosts) or _RETRIEVAL.search(header)):
            continue
        inside = False
        hops.append(hop)
    return hops


def looks_dynamic(host: str) -> bool:
    """Heuristic: a reverse-DNS name of an end-user (dial-up, DSL, cable) address."""
    return bool(_DYNAMIC.search(host))

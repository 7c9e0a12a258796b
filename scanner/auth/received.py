"""Who handed the message to our site: XFORWARD, else the Received chain.

SpamAssassin's model: ``trusted_networks`` are hosts whose Received headers tell the
truth; ``internal_networks`` (always trusted too) are our own MX and relays. Walking the
chain from the top (newest) header, a header written by a trusted host is believed, so
the walk goes on while the host it names is trusted. The first host that is not is the
*first untrusted relay*: the client SPF, HELO and DNSBL checks look at. The first host
outside ``internal_networks`` is the *last external relay* (for lists of dynamic
address space). A hop without an address (a local submission) ends the walk: the
message started inside.

With XFORWARD the first hop is what Postfix saw (``task.client``); Postfix's own
Received header, which says the same, is skipped.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from scanner.dns.blocked import Network, parse_networks
from scanner.errors import ConfigError
from scanner.task import ClientInfo, Task

_FROM = re.compile(r"(?is)^\s*from\s+(.*?)(?=\s+by\s|\s+via\s|\s+with\s|\s+id\s|\s+for\s|;|$)")
_BY = re.compile(r"(?is)\sby\s+([^\s;()]+)")
_WITH = re.compile(r"(?is)\swith\s+([A-Za-z0-9]+)")
_BRACKET = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")
_BARE_IP = re.compile(r"(?<![\w.:])(\d{1,3}(?:\.\d{1,3}){3})(?![\w.])")
_HELO_EQ = re.compile(r"(?i)\bhelo=([^\s)\]]+)")
_PAREN = re.compile(r"\(([^()]*)\)")
_AUTH_PROTOS = ("ESMTPA", "ESMTPSA", "LMTPA", "LMTPSA", "UTF8SMTPA", "UTF8SMTPSA")


@dataclass(frozen=True, slots=True)
class Relay:
    """One hop: the host that connected, as the receiving host recorded it."""

    ip: str
    rdns: str = ""
    helo: str = ""
    by: str = ""
    authenticated: bool = False


@dataclass(frozen=True, slots=True)
class Origin:
    """The result of the walk."""

    first_untrusted: Relay | None
    last_external: Relay | None
    source: str  # "xforward", "received" or "none"

    @property
    def all_trusted(self) -> bool:
        """No untrusted host touched the message (or none could be found)."""
        return self.first_untrusted is None


@functools.lru_cache(maxsize=1024)  # the auth and dnsbl checks read the same headers
def parse_received(value: str) -> Relay | None:
    """The connecting host of one Received header; None when it names no address."""
    text = " ".join(value.split())
    m = _FROM.match(text)
    if not m:
        return None
    clause = m.group(1)
    ip = _first_ip(clause)
    if ip is None:
        return None
    helo_m = _HELO_EQ.search(clause)
    first = clause.split(None, 1)[0] if clause.split() else ""
    helo = helo_m.group(1) if helo_m else first.strip("()[]")
    rdns = ""
    for inner in _PAREN.findall(clause):
        name = inner.split("[", 1)[0].strip()
        if name and " " not in name and name.lower() != "unknown" and "=" not in name \
                and _first_ip(f"[{name}]") is None:
            rdns = name.lower()
            break
    by_m = _BY.search(" " + text)
    with_m = _WITH.search(" " + text)
    return Relay(ip=ip, rdns=rdns.rstrip("."), helo=helo.rstrip("."),
                 by=by_m.group(1).lower() if by_m else "",
                 authenticated=bool(with_m and with_m.group(1).upper() in _AUTH_PROTOS))


def _first_ip(clause: str) -> str | None:
    for candidate in _BRACKET.findall(clause) + _BARE_IP.findall(clause):
        try:
            addr = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        return plain_ip(addr)
    return None


def plain_ip(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The address as text, an IPv4-mapped IPv6 one (``::ffff:192.0.2.1``, as a
    dual-stack socket reports IPv4 peers) as the IPv4 address it is."""
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def in_networks(ip: str, networks: Sequence[Network]) -> bool:
    addr = _address(ip)
    return addr is not None and any(addr.version == n.version and addr in n
                                    for n in networks)


@functools.lru_cache(maxsize=1024)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def find_origin(received: Sequence[str], client: ClientInfo, trusted: Sequence[Network],
                internal: Sequence[Network], trust_authenticated: bool = True) -> Origin:
    """Walk XFORWARD and the Received headers (newest first) to the first untrusted relay.

    ``internal`` networks are trusted as well. With ``trust_authenticated``, a hop a
    trusted host recorded as authenticated (``with ESMTPA``) is treated as trusted.
    """
    hops, source = _hops(received, client)
    trusted_all = list(trusted) + list(internal)
    first_untrusted = _walk(hops, trusted_all, trust_authenticated)
    last_external = _walk(hops, list(internal), trust_authenticated)
    if first_untrusted is None:
        last_external = None
    return Origin(first_untrusted, last_external, source if hops else "none")


def _hops(received: Sequence[str], client: ClientInfo) -> tuple[list[Relay | None], str]:
    parsed = [parse_received(v) for v in received]
    if client.addr:
        addr = _address(client.addr)
        # a mapped XFORWARD/milter address: the lists and the Received headers know the IPv4
        ip = plain_ip(addr) if addr is not None else client.addr
        name = client.name if client.name and client.name.lower() != "unknown" else ""
        first = Relay(ip=ip, rdns=(name or "").lower(), helo=client.helo or "")
        if parsed and parsed[0] is not None and parsed[0].ip == ip:
            first = Relay(first.ip, first.rdns, first.helo, parsed[0].by,
                          parsed[0].authenticated)
            parsed = parsed[1:]
        return [first, *parsed], "xforward"
    return parsed, "received"


def _walk(hops: Sequence[Relay | None], networks: Sequence[Network],
          trust_authenticated: bool) -> Relay | None:
    for hop in hops:
        if hop is None:  # a locally submitted message: it started inside
            return None
        if in_networks(hop.ip, networks):
            continue
        if trust_authenticated and hop.authenticated:
            return None  # our own user, authenticated to a trusted relay
        return hop
    return None


def networks_setting(values: Sequence[str], default: Sequence[str], key: str, source: str
                     ) -> tuple[Network, ...]:
    """Parse a ``*_networks`` setting (``default`` when empty); ConfigError naming the key."""
    try:
        return parse_networks(values or default)
    except ValueError as exc:
        raise ConfigError(f"{source}: '{key}': {exc}") from None


def task_origin(task: Task, trusted: Sequence[Network], internal: Sequence[Network],
                trust_authenticated: bool = True) -> Origin:
    """:func:`find_origin` for a Task: its XFORWARD client and Received headers."""
    msg = task.message
    received = [str(v) for v in msg.get_all("Received", [])] if msg is not None else []
    return find_origin(received, task.client, trusted, internal, trust_authenticated)

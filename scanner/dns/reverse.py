"""Query names for IP-keyed lists: reversed octets (IPv4) or nibbles (IPv6); and which
addresses no public list can know (private, loopback, link-local, ...)."""

from __future__ import annotations

import functools
import ipaddress

# ranges no public host is in: "this network", private, shared (CGN), loopback,
# link-local, multicast and reserved (IPv4); unspecified, loopback, unique local,
# link-local and multicast (IPv6). A list lookup for one of them says nothing (and a
# list's 127.0.0.2 test entry would match)
NOT_PUBLIC = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3", "::/128", "::1/128", "fc00::/7",
    "fe80::/10", "ff00::/8"))


@functools.lru_cache(maxsize=4096)  # the relays and link hosts of mail come back often
def is_public(ip: str) -> bool:
    """Whether ``ip`` (valid, IPv4 or IPv6) may be a public host (not in :data:`NOT_PUBLIC`)."""
    addr = ipaddress.ip_address(ip)
    return not any(addr.version == n.version and addr in n for n in NOT_PUBLIC)


@functools.lru_cache(maxsize=4096)  # each address is asked of several lists
def reversed_ip(ip: str) -> str:
    """``"192.0.2.1"`` -> ``"1.2.0.192"``; IPv6 -> 32 reversed nibbles joined by dots."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        return ".".join(reversed(str(addr).split(".")))
    return ".".join(reversed(addr.exploded.replace(":", "")))


def list_query(ip: str, zone: str) -> str:
    """The name to look up for ``ip`` on the list ``zone``."""
    return f"{reversed_ip(ip)}.{zone.strip('.')}"


def unmapped(ip: str) -> str:
    """An IPv4-mapped IPv6 address as plain IPv4; anything else normalised."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)

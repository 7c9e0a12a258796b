"""Query names for IP-keyed lists: reversed octets (IPv4) or nibbles (IPv6)."""

from __future__ import annotations

import ipaddress


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

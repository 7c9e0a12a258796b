"""The ``dns`` table every DNS-using check accepts (``[checks.settings.NAME.dns]``).

Checks with the same ``resolvers`` and ``cache_size`` share one client and cache.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from scanner.config.schema import opt
from scanner.errors import ConfigError


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """Resolvers, timeouts and cache of the DNS lookups of one check."""

    resolvers: tuple[str, ...] = opt(
        [], "recursive resolvers as ADDRESS, ADDRESS:PORT or [IPV6]:PORT; empty = the "
        "system's (/etc/resolv.conf). Use a local caching resolver for DNSBLs")
    timeout: float = opt(3.0, "seconds one query may take, retries included", min=0.05,
                         max=30.0)
    budget: float = opt(8.0, "seconds all DNS queries of one message may take together; "
                        "checks run concurrently, so this bounds the added latency",
                        min=0.05, max=60.0)
    cache_size: int = opt(20000, "answers kept in the per-process cache (TTLs honoured); "
                          "0 = no cache", min=0)


def resolver_addresses(settings: DnsSettings, where: str, source: str) -> list[tuple[str, int]]:
    """The configured resolvers as (address, port); a bad entry raises ConfigError."""
    out = []
    for i, text in enumerate(settings.resolvers):
        try:
            out.append(parse_resolver(text))
        except ValueError as exc:
            raise ConfigError(f"{source}: '{where}.resolvers[{i}]' = {text!r}: {exc}") from None
    return out


def parse_resolver(text: str) -> tuple[str, int]:
    """``"127.0.0.1"``, ``"127.0.0.1:5353"``, ``"::1"`` or ``"[::1]:5353"`` -> (address, port)."""
    value = text.strip()
    port = 53
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("use ADDRESS, ADDRESS:PORT or [IPV6]:PORT")
        value = host
        if rest:
            port = _port(rest[1:])
    elif value.count(":") == 1:
        value, _, port_text = value.partition(":")
        port = _port(port_text)
    try:
        return str(ipaddress.ip_address(value)), port
    except ValueError:
        raise ValueError("not an IP address (optionally with :PORT)") from None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError("bad port")
    return int(text)

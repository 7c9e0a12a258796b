"""Address patterns as amavis looks them up: most specific first.

Patterns: ``user+ext@sub.example.com``, ``user@sub.example.com``, ``user+ext@``,
``user@``, ``@sub.example.com``, ``@.sub.example.com``, ``@.example.com``, ``@.com``,
``@.`` (everyone). ``@.domain`` also matches the domain's subdomains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from scanner.addresses import split_localpart

V = TypeVar("V")


def candidates(address: str, delimiter: str = "+") -> list[str]:
    """Lookup keys for ``address``, most specific first (all lower-case)."""
    local, _, domain = address.lower().rpartition("@")
    if not _:
        local, domain = address.lower(), ""
    base = split_localpart(local, delimiter)[0]
    keys = []
    locals_ = [local] if base == local else [local, base]
    keys += [f"{lp}@{domain}" for lp in locals_]
    keys += [f"{lp}@" for lp in locals_]
    keys.append(f"@{domain}")
    labels = domain.split(".") if domain else []
    for i in range(len(labels)):
        keys.append("@." + ".".join(labels[i:]))
    keys.append("@.")
    return keys


def lookup(table: Mapping[str, V], address: str, delimiter: str = "+") -> V | None:
    """The value of the most specific key of ``table`` matching ``address``."""
    if not table:
        return None
    lowered = {k.lower(): v for k, v in table.items()}
    for key in candidates(address, delimiter):
        if key in lowered:
            return lowered[key]
    return None


def listed(patterns: Iterable[str], address: str, delimiter: str = "+") -> bool:
    """True when any pattern matches ``address`` (the null sender matches only '<>')."""
    pats = {p.lower() for p in patterns}
    if not address:
        return "<>" in pats
    return any(key in pats for key in candidates(address, delimiter))

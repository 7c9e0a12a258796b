"""Address patterns as amavis looks them up: most specific first.

Patterns: ``user+ext@sub.example.com``, ``user@sub.example.com``, ``user+ext@``,
``user@``, ``@sub.example.com``, ``@.sub.example.com``, ``@.example.com``, ``@.com``,
``@.`` (everyone). ``@.domain`` also matches the domain's subdomains.

Addresses and patterns are compared as amavis compares them (``make_query_keys``): the
domain in its A-label form (``@.пример.рф`` and ``@.xn--e1afmkfd.xn--p1ai`` are one
pattern), the local part with only its ASCII letters folded (:mod:`scanner.idn`). The
policy SQL lookup leaves out the ``user@`` keys for a recipient that is not local, as
amavis's SQL lookups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from scanner.addresses import split_localpart
from scanner.idn import fold_address

V = TypeVar("V")


def candidates(address: str, delimiter: str = "+", bare_user: bool = True) -> list[str]:
    """Lookup keys for ``address``, most specific first (:func:`pattern_key` forms);
    without ``bare_user`` no ``user@`` keys (amavis's SQL lookups try a bare user name
    only for a local address)."""
    local, _, domain = fold_address(address).rpartition("@")
    if not _:
        local, domain = fold_address(address), ""
    base = split_localpart(local, delimiter)[0]
    keys = []
    locals_ = [local] if base == local else [local, base]
    keys += [f"{lp}@{domain}" for lp in locals_]
    keys += [f"{lp}@" for lp in locals_] if bare_user else []
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
    lowered = {pattern_key(k): v for k, v in table.items()}
    for key in candidates(address, delimiter):
        if key in lowered:
            return lowered[key]
    return None


def listed(patterns: Iterable[str], address: str, delimiter: str = "+") -> bool:
    """True when any pattern matches ``address`` (the null sender matches only '<>')."""
    pats = {pattern_key(p) for p in patterns}
    if not address:
        return "<>" in pats
    return any(key in pats for key in candidates(address, delimiter))


def pattern_key(pattern: str) -> str:
    """A table's or list's pattern as :func:`candidates` spells its keys: ``@.Пример.РФ``
    -> ``@.xn--e1afmkfd.xn--p1ai``, ``Δ@Example.com`` -> ``Δ@example.com``."""
    return fold_address(pattern)

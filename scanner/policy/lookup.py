"""Address patterns as amavis looks them up: most specific first.

Patterns: ``user+ext@sub.example.com``, ``user@sub.example.com``, ``user+ext@``,
``user@``, ``@sub.example.com``, ``@.sub.example.com``, ``@.example.com``, ``@.com``,
``@.`` (everyone). ``@.domain`` also matches the domain's subdomains. An internationalized
domain is looked up in its UTF-8 and its ACE (``xn--``) form; the policy SQL lookup
leaves out the ``user@`` keys for a recipient that is not local, as amavis's SQL lookups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from scanner.addresses import split_localpart

V = TypeVar("V")


def candidates(address: str, delimiter: str = "+", bare_user: bool = True) -> list[str]:
    """Lookup keys for ``address``, most specific first (all lower-case); without
    ``bare_user`` no ``user@`` keys (amavis's SQL lookups try a bare user name only for
    a local address)."""
    local, _, domain = address.lower().rpartition("@")
    if not _:
        local, domain = address.lower(), ""
    base = split_localpart(local, delimiter)[0]
    keys = []
    locals_ = [local] if base == local else [local, base]
    forms = domain_forms(domain)
    keys += [f"{lp}@{d}" for lp in locals_ for d in forms]
    keys += [f"{lp}@" for lp in locals_] if bare_user else []
    keys += [f"@{d}" for d in forms]
    for i in range(len(domain.split(".")) if domain else 0):
        keys += ["@." + ".".join(d.split(".")[i:]) for d in forms]
    keys.append("@.")
    return list(dict.fromkeys(keys))  # an IDN's ASCII labels are the same in both forms


def domain_forms(domain: str) -> list[str]:
    """``domain`` (lower case), then its other IDNA form when it has one: the ACE form
    (``xn--bcher-kva.example``) of a UTF-8 domain, the UTF-8 form of an ACE one. amavis
    keeps SQL keys in ACE; an SMTPUTF8 message names the recipient in UTF-8."""
    if domain.isascii() and "xn--" not in domain:
        return [domain]
    try:
        other = domain.encode("idna").decode("ascii") if not domain.isascii() \
            else domain.encode("ascii").decode("idna").lower()
    except UnicodeError:  # not a valid IDN: looked up as given only
        return [domain]
    if other == domain or other.count(".") != domain.count("."):
        return [domain]
    return [domain, other]


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

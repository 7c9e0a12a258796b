"""The effective policy of one recipient: [policy], then policy banks, then the recipient.

Banks apply in this order: MYNETS (when the client address is in ``mynetworks`` and a
MYNETS bank exists), then the listener's bank. ORIGINATING has a built-in default (no
spam scoring for outbound mail) unless the configuration defines its own.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from scanner.config import Config
from scanner.config.policy import BUILTIN_BANKS, PolicyConfig, apply
from scanner.idn import fold_domain
from scanner.policy.lookup import lookup, pattern_key


def bank_names(config: Config, listener_bank: str, client_addr: str | None) -> list[str]:
    """The banks that apply to a message, in order."""
    names = []
    if client_addr and "MYNETS" in config.policy_banks \
            and _in_networks(client_addr, config.policy.mynetworks):
        names.append("MYNETS")
    # as amavis, a bank nobody defined is left out (an AM.PDP client sends what it has:
    # SMTP_AUTH, the MTA's name); a listener's bank is checked with the configuration
    names += [n for n in listener_banks(listener_bank)
              if n in config.policy_banks or n in BUILTIN_BANKS]
    return names


def listener_banks(listener_bank: str) -> list[str]:
    """The bank names of a listener (one) or of an AM.PDP request (``A,B``, amavis's
    ``policy_bank`` attribute), in order, blanks around names dropped."""
    return [n.strip() for n in listener_bank.split(",") if n.strip()]


def any_bank_in(listener_bank: str, upper_names: set[str]) -> bool:
    """One of the listener's (or AM.PDP request's) banks is in ``upper_names`` (upper
    case): the checks' ``skip_policy_banks``."""
    return any(n.upper() in upper_names for n in listener_banks(listener_bank))


def message_policy(config: Config, banks: list[str]) -> PolicyConfig:
    """[policy] with the banks applied (recipient tables not yet)."""
    policy = config.policy
    for name in banks:
        override = config.policy_banks.get(name) or BUILTIN_BANKS.get(name)
        if override is not None:
            policy = apply(policy, override)
    return policy


def recipient_policy(base: PolicyConfig, address: str) -> PolicyConfig:
    """The message policy with the most specific recipient entry applied."""
    override = lookup(base.recipients, address, base.recipient_delimiter)
    return apply(base, override) if override is not None else base


def is_local(policy: PolicyConfig, address: str) -> bool:
    """A recipient ``local_domains`` calls local (every recipient when the list is empty).

    The entries read as amavis reads ``@local_domains_acl`` (README.lookups): the first
    entry that matches decides; ``example.com`` matches that domain only,
    ``.example.com`` the domain and its subdomains, ``user@example.com`` that address,
    ``.`` every domain, and a leading ``!`` makes a match mean "not local". Domains
    compare in their A-label form (``example.xn--p1ai`` is ``пример.рф``), local parts
    with their ASCII letters folded, as amavis's ``lookup_acl``.
    """
    if not policy.local_domains:
        return True
    full = pattern_key(address)
    domain = full.rpartition("@")[2]
    for entry in policy.local_domains:
        negated = entry.startswith("!")
        pattern = _acl_key(entry[1:] if negated else entry)
        if _acl_match(pattern, full, domain):
            return not negated
    return False


def recipient_is_local(policy: PolicyConfig, address: str) -> bool:
    """Whether recipient ``address``, whose effective policy is ``policy``, is local:
    its own ``local`` setting (a policy SQL row's ``local``, an LDAP entry's
    ``amavisLocal``, a recipient table's) when it has one, else :func:`is_local`. amavis
    puts its SQL and LDAP lookups in front of ``@local_domains_maps`` the same way."""
    return policy.local if policy.local is not None else is_local(policy, address)


def sender_is_local(policy: PolicyConfig, address: str, row: Any = None) -> bool:
    """Whether an originator ``address`` (envelope sender, From...) is one of ours:
    ``row``'s ``local`` (its policy SQL row or LDAP entry, looked up as a recipient's
    would be), else the ``local`` of its most specific recipient table, else
    :func:`is_local` when ``local_domains`` is set; with none of them nobody is, as in
    amavis, which looks senders up in ``@local_domains_maps`` (SQL and LDAP included).
    (An empty ``local_domains`` makes every *recipient* local, not every sender.)"""
    if row is not None and getattr(row, "local", None) is not None:
        return bool(row.local)
    table = recipient_policy(policy, address).local
    if table is not None:
        return table
    return bool(policy.local_domains) and is_local(policy, address)


def _acl_key(entry: str) -> str:
    """An entry in the form :func:`pattern_key` gives an address: a domain (with or
    without its leading dot) in A-label form."""
    return pattern_key(entry) if "@" in entry else fold_domain(entry)


def _acl_match(pattern: str, address: str, domain: str) -> bool:
    if "@" in pattern:
        return address == pattern
    if pattern == ".":
        return True
    if pattern.startswith("."):
        return domain == pattern[1:] or domain.endswith(pattern)
    return domain == pattern


def client_is_local(config: Config, client_addr: str | None) -> bool:
    """The client address is in ``policy.mynetworks`` (amavis's LOCAL in the log line)."""
    return bool(client_addr) and _in_networks(str(client_addr), config.policy.mynetworks)


@lru_cache(maxsize=4096)  # pure; a few busy clients (Postfix's own relays) repeat
def _in_networks(addr: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in _parsed(networks))


@lru_cache(maxsize=16)  # pure; the configuration's tuple is parsed once, not per message
def _parsed(networks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)

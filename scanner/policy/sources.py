"""Per-recipient policy read from outside the configuration file: SQL, then LDAP.

amavis puts its SQL field lookups, then its LDAP attribute lookups, in front of each
static lookup table (``unshift``, SQL last so first), and each setting comes from the
first of them that has a value for it. Here each source (:mod:`scanner.policy.sql`,
:mod:`scanner.policy.ldap`) merges what it finds for a recipient into one partial policy
(its rows or entries, key by key: :func:`first_set`); the sources' partial policies are
merged the same way, SQL before LDAP; a key none sets keeps the configuration's value.

A source that cannot be read raises :class:`PolicyLookupError`: the message is deferred
(451), never delivered with the configuration's policy alone.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scanner.config import Config, check_policy_table
from scanner.config.policy import PolicyOverride
from scanner.config.schema import build
from scanner.errors import ConfigError
from scanner.policy.lookup import candidates

log = logging.getLogger("scanner.policy")
TTL = 60.0
"""Seconds a worker keeps a recipient's merged settings before reading them again."""
CACHE_MAX = 10000


class PolicyLookupError(Exception):
    """A policy source could not be read: the message must be deferred."""


def first_set(values: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Key by key, the first value that is not None (amavis's field lookups: the first
    row or entry, in the order given, that sets a field decides it)."""
    merged: dict[str, Any] = {}
    for value in values:
        for name, item in value.items():
            if item is not None:
                merged.setdefault(name, item)
    return merged


def number_value(value: Any, whole: bool = False) -> tuple[Any, str]:
    """A looked-up value as a [policy] number (``whole``: a count), and what was wrong
    with it: the LDAP and SQL sources read levels and sizes alike."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"{value!r} is not a number"
    if not math.isfinite(number):
        return None, f"{value!r} is not a finite number"
    if whole:
        return (int(number), "") if number == int(number) else \
            (None, f"{value!r} is not a whole number")
    return number, ""


def set_fields(override: Any) -> dict[str, Any]:
    """The keys a PolicyOverride sets (not None)."""
    if override is None:
        return {}
    return {f.name: getattr(override, f.name) for f in dataclasses.fields(override)
            if getattr(override, f.name) is not None}


def check_setting(config: Config, source: str, where: str, key: str, value: Any) -> str:
    """What is wrong with one key of a row or entry by the configuration file's checks
    (type, choices, levels, addresses, paths); '' when nothing is."""
    try:
        one = build(PolicyOverride, {key: value}, where, source)
        check_policy_table(config, source, where, one)
    except ConfigError as exc:
        return str(exc)
    return ""


class CachedSource:
    """A source's cache of merged settings per recipient, its SIGHUP and its failure.

    Subclasses give ``what`` (``policy SQL``), ``entries`` (``rows``), ``error`` (their
    :class:`PolicyLookupError`), :attr:`location`, :meth:`_fetch` (one read for the keys
    of every recipient not cached; any exception means the source cannot be read) and
    :meth:`_resolve` (each recipient's PolicyOverride from what was read)."""

    what = "policy source"
    entries = "entries"
    error: type[PolicyLookupError] = PolicyLookupError
    readable = "policy source"
    """What :meth:`probe` says cannot be read (``policy LDAP directory``)."""

    def __init__(self, ttl: float = TTL) -> None:
        self._ttl = ttl
        self._cache: dict[tuple[str, str, bool], tuple[float, Any]] = {}
        self._generation = 0

    @property
    def name(self) -> str:
        """How reload_checks names it in its log line."""
        return f"{self.what} lookup"

    @property
    def location(self) -> str:
        raise NotImplementedError

    def reload(self) -> None:
        """SIGHUP (scanner.serve.reload): forget the cached settings, so changed ones
        apply to the next message."""
        self._generation += 1  # a lookup running now does not cache what it read before
        self._cache.clear()
        log.info("SIGHUP: %s %s are read anew", self.what, self.entries)

    def override_for(self, address: str, delimiter: str = "+", local: bool = True) -> Any:
        """The PolicyOverride for ``address``, or None; raises :attr:`error` when the
        source cannot be read. ``user@`` keys apply to ``local`` addresses only
        (policy.local_domains), as amavis's bare user names."""
        return self.overrides_for([(address, local)], delimiter)[address]

    def overrides_for(self, wanted: Sequence[tuple[str, bool]],
                      delimiter: str = "+") -> dict[str, Any]:
        """:meth:`override_for` of each (address, local); the addresses not cached are
        read at once (a message to 500 recipients: one query, not 500)."""
        now, generation = time.monotonic(), self._generation
        found: dict[str, Any] = {}
        missing: list[tuple[tuple[str, str, bool], str, list[str]]] = []
        for address, local in wanted:
            key = (address.lower(), delimiter, local)
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                found[address] = hit[1]
            else:
                missing.append((key, address, candidates(address, delimiter, local)))
        if not missing:
            return found
        try:
            fetched = self._fetch([(address, keys) for _, address, keys in missing])
        except Exception as exc:
            names = ", ".join(f"<{address}>" for _, address, _ in missing)
            log.error("%s lookup for %s failed (%s): %s; the message is deferred",
                      self.what, names, self.location, exc)
            raise self.error(f"{self.what} lookup failed: {exc}") from exc
        if len(self._cache) > CACHE_MAX:
            self._cache.clear()
        resolved = self._resolve(fetched, [(address, keys) for _, address, keys in missing])
        for key, address, _ in missing:
            found[address] = resolved.get(address)
            if generation == self._generation:
                self._cache[key] = (now, found[address])
        return found

    def probe(self) -> None:
        """Read the source once (``scanner serve`` at start, ``scanner config check``);
        raises :attr:`error`."""
        try:
            self._fetch([("", ["@."])])
        except Exception as exc:
            raise self.error(f"{self.readable} cannot be read ({self.location}): "
                             f"{exc}") from exc
        finally:
            self.close()

    def audit(self) -> list[str]:
        """``scanner config check``: whether the source can be read (raises)."""
        self.probe()
        return []

    def close(self) -> None:
        """Close what the source keeps open (nothing here)."""

    def _fetch(self, wanted: list[tuple[str, list[str]]]) -> Any:
        raise NotImplementedError

    def _resolve(self, fetched: Any, wanted: list[tuple[str, list[str]]]) -> dict[str, Any]:
        raise NotImplementedError


def make_sources(config: Config) -> list[Any]:
    """The configured sources, in amavis's order: SQL, then LDAP."""
    sources: list[Any] = []
    if config.policy.sql_lookup and config.policy.sql_lookup_tables == "amavis":
        from scanner.policy.amavis_sql import AmavisSqlPolicy
        sources.append(AmavisSqlPolicy(config.policy.sql_lookup, config))
    elif config.policy.sql_lookup:
        from scanner.policy.sql import SqlPolicy
        sources.append(SqlPolicy(config.policy.sql_lookup, config))
    if config.policy.ldap_lookup:
        from scanner.policy.ldap import LdapPolicy
        sources.append(LdapPolicy(config))
    return sources


def overrides_for(sources: Sequence[Any], wanted: Sequence[tuple[str, bool]],
                  delimiter: str) -> dict[str, Any]:
    """Each recipient's PolicyOverride merged from ``sources`` key by key, the first
    source that sets a key deciding it (None: no source sets anything); raises
    :class:`PolicyLookupError` when a source cannot be read."""
    found = [source.overrides_for(wanted, delimiter) for source in sources]
    merged: dict[str, Any] = {}
    for address, _ in wanted:
        keys = first_set(set_fields(each.get(address)) for each in found)
        merged[address] = PolicyOverride(**keys) if keys else None
    return merged

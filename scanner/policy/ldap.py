"""Per-recipient policy from LDAP amavisAccount entries, as amavis's ``$enable_ldap``.

One search per message (per base, when ``policy.ldap_base`` holds ``%d``): the filter's
``(mail=%m)`` becomes ``(|(mail=KEY1)(mail=KEY2)...)`` with every recipient's lookup
keys (:func:`scanner.policy.lookup.candidates`: ``user+ext@dom``, ``user@dom``, for a
local recipient ``user+ext@`` and ``user@``, ``@dom``, ``@.dom``, ..., ``@.``), as
amavis's ``lookup_ldap`` expands it. A recipient's entries are ordered by the most
specific key their ``mail`` matches, and each setting comes from the first entry that
has its attribute (amavis's ``lookup_ldap_attr``): the merge of :mod:`scanner.policy.
sources`, which then puts the policy SQL rows' settings before these.

The attributes are amavis's (:data:`ATTRIBUTES`); a value is checked as the same key in
the configuration file, and one that fails is logged and counts as absent (the next
entry's value applies). Attributes scanner has no equivalent for (:data:`IGNORED`) are
logged once per worker and ignored.

A lookup that fails (server down or slower than ``policy.ldap_timeout``, a refused
bind, a search error other than "no such object") raises :class:`LdapLookupError`: the
message is deferred (451), never delivered with the configuration's policy alone. The
bind password never reaches a log line or an error message. The servers of
``ldap_lookup`` are tried in turn; a worker keeps its bound connection
(:mod:`scanner.policy.kept`).
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from scanner.config import Config
from scanner.config.ldap import MARK, ldap_urls
from scanner.config.policy import PolicyOverride
from scanner.config.schema import build
from scanner.dburl import redact
from scanner.policy.kept import KeptConnection
from scanner.policy.lookup import pattern_key
from scanner.policy.sources import (
    TTL,
    CachedSource,
    PolicyLookupError,
    check_setting,
    first_set,
    number_value,
)

log = logging.getLogger("scanner.policy")
SOURCE = "policy LDAP entry"
NO_SUCH_OBJECT = 32
"""A base that does not exist (a foreign domain's %d): no entries, as amavis's do_search."""

ATTRIBUTES: dict[str, tuple[str, str]] = {
    "amavisSpamTagLevel": ("tag_level", "number"),
    "amavisSpamTag2Level": ("tag2_level", "number"),
    "amavisSpamKillLevel": ("kill_level", "number"),
    "amavisSpamDsnCutoffLevel": ("dsn_cutoff_level", "number"),
    "amavisSpamQuarantineCutoffLevel": ("spam_quarantine_cutoff_level", "number"),
    "amavisMessageSizeLimit": ("oversized_size", "count"),
    "amavisSpamSubjectTag": ("subject_tag", "text"),
    "amavisSpamSubjectTag2": ("subject_tag2", "text"),
    "amavisVirusLover": ("virus_lover", "flag"),
    "amavisSpamLover": ("spam_lover", "flag"),
    "amavisBannedFilesLover": ("banned_lover", "flag"),
    "amavisBadHeaderLover": ("bad_header_lover", "flag"),
    "amavisUncheckedLover": ("unchecked_lover", "flag"),
    "amavisBypassVirusChecks": ("bypass_virus_checks", "flag"),
    "amavisBypassSpamChecks": ("bypass_spam_checks", "flag"),
    "amavisBypassBannedChecks": ("bypass_banned_checks", "flag"),
    "amavisBypassHeaderChecks": ("bypass_header_checks", "flag"),
    "amavisAddrExtensionVirus": ("addr_extension_virus", "text"),
    "amavisAddrExtensionSpam": ("addr_extension_spam", "text"),
    "amavisAddrExtensionBanned": ("addr_extension_banned", "text"),
    "amavisAddrExtensionBadHeader": ("addr_extension_bad_header", "text"),
    "amavisArchiveQuarantineTo": ("archive_to", "text"),
    "amavisWhitelistSender": ("allow_senders", "list"),
    "amavisBlacklistSender": ("block_senders", "list"),
    "amavisLocal": ("local", "flag"),
}
"""amavis attribute -> (the [policy] key it sets, how its value is read)."""

IGNORED = (
    "amavisSpamTag3Level", "amavisSpamSubjectTag3", "amavisSpamModifiesSubj",
    "amavisVirusQuarantineTo", "amavisSpamQuarantineTo", "amavisBannedQuarantineTo",
    "amavisUncheckedQuarantineTo", "amavisBadHeaderQuarantineTo", "amavisCleanQuarantineTo",
    "amavisWarnVirusRecip", "amavisWarnBannedRecip", "amavisWarnBadHeaderRecip",
    "amavisVirusAdmin", "amavisNewVirusAdmin", "amavisSpamAdmin", "amavisBannedAdmin",
    "amavisBadHeaderAdmin", "amavisBannedRuleNames", "amavisDisclaimerOptions",
    "amavisForwardMethod", "amavisSaUserConf", "amavisSaUserName",
)
"""amavis attributes scanner has no per-recipient equivalent for (README "LDAP policy")."""

_NAMES = {name.lower(): name for name in (*ATTRIBUTES, *IGNORED)}
_logged_ignored: set[str] = set()


class LdapLookupError(PolicyLookupError):
    """The directory could not be read: the message must be deferred."""


class Entry(NamedTuple):
    """One entry found: its DN and its attributes (lower-case names, text values)."""

    dn: str
    attributes: Mapping[str, list[str]]


class LdapPolicy(CachedSource):
    """Looks up PolicyOverride settings in amavisAccount entries by recipient address."""

    what = "policy LDAP"
    entries = "entries"
    error = LdapLookupError
    readable = "policy LDAP directory"

    def __init__(self, config: Config, ttl: float = TTL) -> None:
        super().__init__(ttl)
        self._config = config
        self._policy = config.policy
        self._filter_attrs = [a.strip().lower() for a in
                              MARK.findall(config.policy.ldap_query_filter)]
        # the holder may try every server (connect, StartTLS, bind) and search
        wait = config.policy.ldap_timeout * (len(ldap_urls(config.policy.ldap_lookup)) + 2)
        self._kept = KeptConnection(self._connect, _close, "policy LDAP", wait)

    @property
    def location(self) -> str:
        """The server's URL and the search base, for log lines and messages."""
        return f"{redact(self._policy.ldap_lookup)} base {self._policy.ldap_base!r}"

    def _fetch(self, wanted: list[tuple[str, list[str]]]) -> dict[str, list[Entry]]:
        """The entries found under each base the recipients need, one search per base,
        on the worker's kept connection (:mod:`scanner.policy.kept`)."""
        by_base: dict[str, list[str]] = {}
        for address, keys in wanted:
            by_base.setdefault(self._base(address), []).extend(keys)
        return self._kept.run(lambda conn: {
            base: self._search(conn, base, list(dict.fromkeys(keys)))
            for base, keys in by_base.items()})

    def close(self) -> None:
        """Close the kept connection."""
        self._kept.close()

    def reload(self) -> None:
        """SIGHUP: forget the cached settings and, at the next lookup, the connection."""
        super().reload()
        self._kept.renew()

    def _resolve(self, fetched: dict[str, list[Entry]],
                 wanted: list[tuple[str, list[str]]]) -> dict[str, Any]:
        checked: dict[str, dict[str, Any]] = {}
        for entries in fetched.values():
            for entry in entries:
                checked.setdefault(entry.dn, self._settings(entry))
        return {address: self._merged(fetched[self._base(address)], keys, checked)
                for address, keys in wanted}

    def _merged(self, entries: list[Entry], keys: list[str],
                checked: Mapping[str, dict[str, Any]]) -> Any:
        """The settings of the entries matching ``keys``, the entry of the most specific
        key first, merged key by key; None when no entry matches."""
        at = {key: i for i, key in enumerate(keys)}
        ranked = []
        for order, entry in enumerate(entries):
            found = [at[k] for k in self._mail_keys(entry) if k in at]
            if found:
                ranked.append((min(found), order, entry.dn))
        ranked.sort()  # the most specific key first; the server's order among equals
        merged = first_set(checked[dn] for _, _, dn in ranked)
        merged.pop("local", None)
        local = _local((keys[i], checked[dn].get("local")) for i, _, dn in ranked)
        if local is not None:
            merged["local"] = local
        return build(PolicyOverride, merged, f"ldap[{ranked[0][2]}]", SOURCE) \
            if merged else None

    def _mail_keys(self, entry: Entry) -> Iterable[str]:
        """The values of the filter's %m attributes, as lookup keys are spelt."""
        for attr in self._filter_attrs:
            for value in entry.attributes.get(attr, ()):
                yield pattern_key(value)

    def _settings(self, entry: Entry) -> dict[str, Any]:
        """The entry's attributes as [policy] keys, each checked as the configuration
        file's; a value that fails is logged and left out."""
        good: dict[str, Any] = {}
        for attr, values in entry.attributes.items():
            name = _NAMES.get(attr)
            if name is None or not values:
                continue
            if name in IGNORED:
                _log_ignored(name, entry.dn)
                continue
            key, kind = ATTRIBUTES[name]
            value, problem = _convert(kind, values)
            if not problem:
                where = f"ldap[{entry.dn}].{name}"
                problem = check_setting(self._config, SOURCE, where, key, value)
            if problem:
                log.error("policy LDAP entry %r: attribute %s ignored: %s", entry.dn, name,
                          problem)
            else:
                good[key] = value
        return good

    def _base(self, address: str) -> str:
        """``ldap_base`` with ``%d`` replaced by the recipient's domain (A-label form,
        escaped as a DN value), as amavis's lookup_ldap."""
        base = self._policy.ldap_base
        if "%d" not in base:
            return base
        from ldap3.utils.dn import escape_rdn

        domain = pattern_key(address).rpartition("@")[2].strip(".")
        return base.replace("%d", escape_rdn(domain)) if domain else base

    def _connect(self) -> Any:
        """A bound connection to the first server of ``ldap_lookup`` that takes one
        (amavis's list of hostnames); raises, naming each server's failure, when none
        does."""
        urls = ldap_urls(self._policy.ldap_lookup)
        failures = []
        for url in urls:
            try:
                conn = self._connect_to(url)
            except Exception as exc:
                failures.append(f"{url}: {exc}" if len(urls) > 1 else str(exc))
                if url != urls[-1]:
                    log.warning("policy LDAP server %s cannot be used (%s); trying the next",
                                url, exc)
                continue
            if failures:
                log.info("policy LDAP: connected to %s", url)
            return conn
        raise ConnectionError("; ".join(failures))

    def _connect_to(self, address: str) -> Any:
        """A bound connection to one server; raises on a server that is down, slow,
        shows a certificate that does not verify, or refuses the bind."""
        import ldap3

        policy = self._policy
        url = urlsplit(address)
        timeout = policy.ldap_timeout
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=policy.ldap_ca_file or None,
                        local_certificate_file=policy.ldap_client_cert or None,
                        local_private_key_file=policy.ldap_client_key or None,
                        sni=url.hostname)
        server = ldap3.Server(url.hostname, port=url.port, use_ssl=url.scheme == "ldaps",
                              tls=tls, connect_timeout=timeout, get_info=ldap3.NONE)
        conn = ldap3.Connection(server, user=policy.ldap_bind_dn or None,
                                password=policy.ldap_bind_password or None,
                                receive_timeout=math.ceil(timeout), read_only=True,
                                auto_bind=ldap3.AUTO_BIND_NONE, raise_exceptions=False)
        try:
            conn.open()
            if policy.ldap_tls and not conn.start_tls():
                raise ConnectionError(f"StartTLS failed: {_why(conn)}")
            if policy.ldap_bind_dn and not conn.bind():
                raise PermissionError(f"bind as {policy.ldap_bind_dn!r} failed: {_why(conn)}")
        except BaseException:
            _close(conn)
            raise
        return conn

    def _search(self, conn: Any, base: str, keys: list[str]) -> list[Entry]:
        """The entries of one search whose filter holds ``keys``."""
        import ldap3

        search = ldap3.SUBTREE if self._policy.ldap_scope == "sub" else \
            ldap3.LEVEL if self._policy.ldap_scope == "one" else ldap3.BASE
        wanted = [*self._filter_attrs, *_NAMES]
        conn.search(base, self._filter(keys), search_scope=search, attributes=wanted,
                    dereference_aliases=ldap3.DEREF_BASE,
                    time_limit=math.ceil(self._policy.ldap_timeout))
        code = conn.result.get("result") if conn.result else None
        if code == NO_SUCH_OBJECT:
            return []
        if code != 0:
            raise LookupError(f"search failed: {_why(conn)}")
        return [_entry(item) for item in conn.response or ()
                if item.get("type") == "searchResEntry"]

    def _filter(self, keys: list[str]) -> str:
        """``ldap_query_filter`` with each ``(ATTR=%m)`` matching any of ``keys``."""
        from ldap3.utils.conv import escape_filter_chars

        escaped = [escape_filter_chars(k) for k in keys]
        return MARK.sub(lambda m: "(|" + "".join(f"({m[1]}={k})" for k in escaped) + ")",
                        self._policy.ldap_query_filter)


def _local(entries: Iterable[tuple[str, bool | None]]) -> bool | None:
    """Whether a recipient is local by its entries, each given as (the key it was
    found by, its amavisLocal), in rank order: amavis's B1 attribute, so the first entry
    decides, one without amavisLocal counting as TRUE, except the ``@.`` catch-all
    without it, which is passed over. None: no entry decides (local_domains does)."""
    for key, value in entries:
        if value is not None:
            return value
        if key != "@.":
            return True
    return None


def _entry(item: Mapping[str, Any]) -> Entry:
    """An entry of ldap3's response, its attribute names lower-cased, values as text."""
    attributes: dict[str, list[str]] = {}
    for name, values in (item.get("raw_attributes") or {}).items():
        attributes[name.lower()] = [v.decode("utf-8", "replace") if isinstance(v, bytes)
                                    else str(v) for v in values]
    return Entry(str(item.get("dn", "")), attributes)


def _convert(kind: str, values: list[str]) -> tuple[Any, str]:
    """An attribute's value as its [policy] key takes it (amavis's B, N, S and L
    lookups: booleans are TRUE or FALSE); and what was wrong with it."""
    if kind == "list":
        return list(values), ""
    value = values[0]
    if kind == "flag":
        if value not in ("TRUE", "FALSE"):
            return None, f"{value!r} is not TRUE or FALSE"
        return value == "TRUE", ""
    if kind in ("number", "count"):
        return number_value(value, whole=kind == "count")
    return value, ""


def _log_ignored(name: str, dn: str) -> None:
    if name in _logged_ignored:
        return
    _logged_ignored.add(name)
    log.warning("policy LDAP entry %r: attribute %s has no equivalent in scanner; ignored "
                "(logged once; README \"LDAP policy\")", dn, name)


def _close(conn: Any) -> None:
    """Unbind and close; ldap3 leaves the socket of a failed connect open. An unbind
    that fails (a socket a failed TLS handshake closed) must not hide why the
    connection is being closed."""
    try:
        conn.unbind()
    except Exception:  # noqa: S110 (closing anyway)
        pass
    finally:
        sock = getattr(conn, "socket", None)
        if sock is not None:
            sock.close()


def _why(conn: Any) -> str:
    result = conn.result or {}
    return f"{result.get('description', 'error')} {result.get('message', '')}".strip()

"""Checks of the ``policy.ldap_*`` keys (per-recipient policy from LDAP).

A mistake here would defer every message at its first lookup (the server refuses the
filter, the base or the bind), so the configuration is refused at load instead, naming
the key. The bind password never appears in an error message.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from scanner.config.model import Config
from scanner.dburl import MASK, redact
from scanner.errors import ConfigError

MARK = re.compile(r"\(([^()=]+)=%m\)")
"""A ``(ATTR=%m)`` term of ``ldap_query_filter``: amavis expands it into the recipient's
lookup keys, ``(|(ATTR=key1)(ATTR=key2)...)``."""


def check_ldap(config: Config) -> None:
    """Refuse ``policy.ldap_*`` settings that cannot work, and a missing ldap3."""
    policy, src = config.policy, config.source
    if not policy.ldap_lookup:
        return
    url = policy.ldap_lookup
    where = f"{src}: 'policy.ldap_lookup' = {redact(url)!r}"
    parts = urlsplit(url)
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname or parts.path.strip("/") \
            or parts.query or parts.username:
        raise ConfigError(f"{where}: use 'ldap://host[:port]' or 'ldaps://host[:port]' (no "
                          "user, base or filter in it: ldap_bind_dn, ldap_base, "
                          "ldap_query_filter)")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise ConfigError(f"{where}: the port is not a number from 1 to 65535") from None
    if not policy.ldap_base.strip():
        raise ConfigError(f"{src}: 'policy.ldap_base' is empty; give the DN the entries "
                          "are under (e.g. \"ou=people,dc=example,dc=com\")")
    check_filter(src, policy.ldap_query_filter)
    if policy.ldap_bind_password and not policy.ldap_bind_dn:
        raise ConfigError(f"{src}: 'policy.ldap_bind_password' is set but "
                          "'policy.ldap_bind_dn' is empty; give the DN to bind as")
    if policy.ldap_tls and parts.scheme == "ldaps":
        raise ConfigError(f"{src}: 'policy.ldap_tls' (StartTLS) with an ldaps:// URL; "
                          "use one or the other")
    try:
        import ldap3  # noqa: F401 (optional dependency)
    except ImportError:
        raise ConfigError(f"{src}: 'policy.ldap_lookup' is set but the Python package "
                          "ldap3 is not installed: pip install 'scanner[ldap]' (or "
                          "python3-ldap3)") from None


def check_filter(src: str, query_filter: str) -> None:
    """The filter is one parenthesised LDAP filter with at least one ``(ATTR=%m)``."""
    key = f"{src}: 'policy.ldap_query_filter' = {query_filter!r}"
    if not MARK.search(query_filter):
        raise ConfigError(f"{key} has no (ATTR=%m) term; without it every lookup "
                          "finds the same entries (amavis's default is "
                          "'(&(objectClass=amavisAccount)(mail=%m))')")
    if "%m" in MARK.sub("", query_filter):
        raise ConfigError(f"{key}: %m is only understood as a whole value, (ATTR=%m)")
    depth = 0
    for ch in query_filter.strip():
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            break
    stripped = query_filter.strip()
    if depth != 0 or not (stripped.startswith("(") and stripped.endswith(")")):
        raise ConfigError(f"{key}: parentheses do not match; write one filter in "
                          "parentheses")


def redacted_password(password: str) -> str:
    """The bind password as ``scanner config show`` prints it."""
    return MASK if password else ""

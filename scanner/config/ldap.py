"""Checks of the ``policy.ldap_*`` keys (per-recipient policy from LDAP).

A mistake here would defer every message at its first lookup (the server refuses the
filter, the base or the bind), so the configuration is refused at load instead, naming
the key. The bind password never appears in an error message.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

from scanner.config.model import Config
from scanner.dburl import MASK, redact
from scanner.errors import ConfigError

MARK = re.compile(r"\(([^()=]+)=%m\)")
"""A ``(ATTR=%m)`` term of ``ldap_query_filter``: amavis expands it into the recipient's
lookup keys, ``(|(ATTR=key1)(ATTR=key2)...)``."""


def ldap_urls(value: str) -> list[str]:
    """The server URLs of ``policy.ldap_lookup``, in the order they are tried."""
    return value.split()


def check_ldap(config: Config) -> None:
    """Refuse ``policy.ldap_*`` settings that cannot work, and a missing ldap3."""
    policy, src = config.policy, config.source
    if not policy.ldap_lookup:
        return
    schemes = [_check_url(src, url) for url in ldap_urls(policy.ldap_lookup)]
    if not policy.ldap_base.strip():
        raise ConfigError(f"{src}: 'policy.ldap_base' is empty; give the DN the entries "
                          "are under (e.g. \"ou=people,dc=example,dc=com\")")
    check_filter(src, policy.ldap_query_filter)
    if policy.ldap_bind_password and not policy.ldap_bind_dn:
        raise ConfigError(f"{src}: 'policy.ldap_bind_password' is set but "
                          "'policy.ldap_bind_dn' is empty; give the DN to bind as")
    if policy.ldap_tls and "ldaps" in schemes:
        raise ConfigError(f"{src}: 'policy.ldap_tls' (StartTLS) with an ldaps:// URL; "
                          "use one or the other")
    check_tls_files(config, tls=policy.ldap_tls or "ldaps" in schemes)
    try:
        import ldap3  # noqa: F401 (optional dependency)
    except ImportError:
        raise ConfigError(f"{src}: 'policy.ldap_lookup' is set but the Python package "
                          "ldap3 is not installed: pip install 'scanner[ldap]' (or "
                          "python3-ldap3)") from None


def _check_url(src: str, url: str) -> str:
    """One server URL of ``ldap_lookup`` is ``ldap[s]://host[:port]``; its scheme."""
    where = f"{src}: 'policy.ldap_lookup' URL {redact(url)!r}"
    parts = urlsplit(url)
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname or parts.path.strip("/") \
            or parts.query or parts.username:
        raise ConfigError(f"{where}: use 'ldap://host[:port]' or 'ldaps://host[:port]', "
                          "several separated by spaces (no user, base or filter in them: "
                          "ldap_bind_dn, ldap_base, ldap_query_filter)")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise ConfigError(f"{where}: the port is not a number from 1 to 65535") from None
    return parts.scheme


def check_tls_files(config: Config, tls: bool) -> None:
    """``ldap_ca_file``, ``ldap_client_cert`` and ``ldap_client_key`` are PEM files
    Python's TLS can load, and are only given where TLS is used."""
    policy, src = config.policy, config.source
    given = [k for k in ("ldap_ca_file", "ldap_client_cert", "ldap_client_key")
             if getattr(policy, k)]
    if not given:
        return
    if not tls:
        raise ConfigError(f"{src}: 'policy.{given[0]}' is set but no connection uses TLS; "
                          "use ldaps:// URLs in 'policy.ldap_lookup' or set "
                          "'policy.ldap_tls' (StartTLS)")
    if policy.ldap_client_key and not policy.ldap_client_cert:
        raise ConfigError(f"{src}: 'policy.ldap_client_key' is set but "
                          "'policy.ldap_client_cert' is empty; give the certificate too")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if policy.ldap_ca_file:
        _load(src, "ldap_ca_file", policy.ldap_ca_file, "PEM CA certificates",
              lambda: context.load_verify_locations(cafile=policy.ldap_ca_file))
    if policy.ldap_client_cert:
        _load(src, "ldap_client_cert", policy.ldap_client_cert,
              "a PEM certificate with its private key (in this file or "
              "ldap_client_key, and matching)",
              lambda: context.load_cert_chain(policy.ldap_client_cert,
                                              policy.ldap_client_key or None))


def _load(src: str, key: str, path: str, what: str, load: Callable[[], None]) -> None:
    """Run ``load`` (which reads ``path``); a failure names the key and the file."""
    where = f"{src}: 'policy.{key}' = {path!r}"
    try:
        load()
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{where}: cannot be read (permission denied); the filter "
                          "runs as its own user") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"{where}: not {what} ({exc})") from None


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

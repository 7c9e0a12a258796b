"""from-amavis: amavis's LDAP lookups (``$enable_ldap``, ``$default_ldap``).

With ``$enable_ldap`` true, ``$default_ldap``'s hostname and port become
``policy.ldap_lookup`` (a URL), and base, scope, query_filter, bind_dn, bind_password,
timeout and tls the ``policy.ldap_*`` keys of the same meaning (README "LDAP policy").
A list of hostnames becomes a list of URLs (tried in turn); cafile, clientcert and
clientkey become ldap_ca_file, ldap_client_cert and ldap_client_key. The settings scanner
has no equivalent for (SASL, capath, deref, ...) are noted. With LDAP lookups off,
``$default_ldap`` is noted and left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scanner.migrate.amavis_tables import as_flag
from scanner.migrate.perlconf import UNREAD, Statement

ENABLE, DEFAULT = "$enable_ldap", "$default_ldap"
KEYS = {"base": "ldap_base", "query_filter": "ldap_query_filter",
        "bind_dn": "ldap_bind_dn", "bind_password": "ldap_bind_password"}
SCOPES = {"sub": "sub", "subtree": "sub", "2": "sub", "one": "one", "onelevel": "one",
          "single": "one", "1": "one", "base": "base", "0": "base"}
MAX_TIMEOUT = 60.0
"""policy.ldap_timeout's upper bound (amavis's default timeout is 120 s)."""
SEE = "README \"LDAP policy\""
TLS_FILES = {"cafile": "ldap_ca_file", "clientcert": "ldap_client_cert",
             "clientkey": "ldap_client_key"}


def map_ldap(last: dict[str, Statement], conv: Any, handled: set[str]) -> None:
    """Convert ``$default_ldap`` when ``$enable_ldap`` is on; note what is left."""
    enable, default = last.get(ENABLE), last.get(DEFAULT)
    if enable is None and default is None:
        return
    handled.update(t for t in (ENABLE, DEFAULT) if t in last)
    on = enable is not None and enable.value is not UNREAD and as_flag(enable.value)
    if not on:
        for statement in (enable, default):
            if statement is not None:
                conv.note(statement, "LDAP lookups are off ($enable_ldap): not converted; "
                          f"scanner reads amavisAccount entries with policy.ldap_lookup ({SEE})")
        return
    if default is None or not isinstance(default.value, dict):
        why = "is not set" if default is None else "could not be read"
        conv.note(enable, f"$default_ldap {why}: set policy.ldap_lookup, ldap_base and "
                  f"the other ldap_* keys by hand ({SEE})")
        return
    _convert(default, conv)


def _convert(statement: Statement, conv: Any) -> None:
    settings: dict[str, Any] = dict(statement.value)
    origin = f"$default_ldap ({statement.where})"
    url = _urls(settings.pop("hostname", "localhost"), settings.pop("port", None))
    if url is None:
        conv.note(statement, "its hostname is not a host name or URL, or a list of them: "
                  "set policy.ldap_lookup by hand")
        return
    if not settings.get("base"):
        conv.note(statement, "it names no base: set policy.ldap_lookup = "
                  f"\"{url}\" and policy.ldap_base by hand ({SEE})")
        return
    conv.set("policy", "ldap_lookup", url, origin)
    for name, key in KEYS.items():
        value = settings.pop(name, None)
        if isinstance(value, str) and value:
            conv.set("policy", key, value, origin)
    scope = SCOPES.get(str(settings.pop("scope", "sub")).lower())
    if scope is None:
        conv.note(statement, "its scope is not sub, one or base: ldap_scope left at sub")
    elif scope != "sub":
        conv.set("policy", "ldap_scope", scope, origin)
    _timeout(settings.pop("timeout", None), statement, conv, origin)
    tls = as_flag(settings.pop("tls", 0))
    if tls:
        conv.set("policy", "ldap_tls", True, origin)
    _tls_files(settings, statement, conv, origin, tls or "ldaps://" in url)
    settings = {k: v for k, v in settings.items() if v not in (None, "", 0)}
    if settings:
        conv.note(statement, f"not converted: {', '.join(sorted(settings))} (scanner "
                  "always verifies the server's TLS certificate, against ldap_ca_file or "
                  f"the system's CA certificates, and has no SASL, capath, deref or "
                  f"version settings; {SEE})")


def _tls_files(settings: dict[str, Any], statement: Statement, conv: Any, origin: str,
               tls: bool) -> None:
    """amavis's cafile, clientcert and clientkey as ldap_ca_file, ldap_client_cert and
    ldap_client_key, when a connection uses TLS and the file is on this machine."""
    for name, key in TLS_FILES.items():
        value = settings.pop(name, None)
        if not isinstance(value, str) or not value:
            continue
        if not tls:
            conv.note(statement, f"{name} {value!r} left out: no connection uses TLS")
        elif not Path(value).is_file():
            conv.note(statement, f"{name} {value!r} is not a file here: set policy.{key} "
                      "by hand where the filter runs")
        else:
            conv.set("policy", key, value, origin)


def _urls(hostname: Any, port: Any) -> str | None:
    """amavis's hostname (a name, an ldap:// or ldaps:// URL, or a list of them, tried
    in turn) and port as ldap_lookup's URLs."""
    names = hostname if isinstance(hostname, list) else [hostname]
    urls = [_url(name, port) for name in names]
    if not urls or None in urls:
        return None
    return " ".join(u for u in urls if u)


def _url(hostname: Any, port: Any) -> str | None:
    """One host name or URL, with ``port`` when it names none, as a URL."""
    if not isinstance(hostname, str) or not hostname or " " in hostname:
        return None
    url = hostname if "://" in hostname else f"ldap://{hostname}"
    has_port = ":" in url.split("://", 1)[1].strip("/")
    if port is not None and not has_port:
        url = f"{url.rstrip('/')}:{port}"
    return url.rstrip("/")


def _timeout(value: Any, statement: Statement, conv: Any, origin: str) -> None:
    if value is None:
        conv.note(statement, "no timeout given: amavis waited up to 120 s, scanner's "
                  "policy.ldap_timeout is 5 s for each of connect, bind and search")
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        conv.note(statement, f"its timeout {value!r} is not a number of seconds")
        return
    conv.set("policy", "ldap_timeout", float(min(max(value, 1.0), MAX_TIMEOUT)),
             origin + (f" (amavis's {value} s; at most {MAX_TIMEOUT:g} here)"
                       if value > MAX_TIMEOUT else ""))

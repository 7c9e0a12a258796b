"""Load, validate and render the TOML configuration.

``load(path)`` returns an immutable :class:`Config`; with no path the shipped defaults
apply. Errors name the file, the key and what is allowed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from scanner.config.disclaimer import check_disclaimers
from scanner.config.ldap import check_ldap, redacted_password
from scanner.config.model import (
    ChecksConfig,
    Config,
    DecodeConfig,
    ListenerConfig,
    NoticesConfig,
    PolicyConfig,
    ReinjectConfig,
    ServerConfig,
)
from scanner.config.policy import BUILTIN_BANKS, NOT_OVERRIDABLE
from scanner.config.schema import build, to_plain
from scanner.dburl import is_postgresql, redact
from scanner.errors import ConfigError
from scanner.quarantine.config import QuarantineConfig
from scanner.sqllog.config import SqlLogConfig
from scanner.unixsock import MAX_PATH_BYTES

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PATH = "/etc/scanner/scanner.toml"
ENV_VAR = "SCANNER_CONFIG"

__all__ = [
    "ChecksConfig", "Config", "ConfigError", "DecodeConfig", "ListenerConfig", "PolicyConfig",
    "ReinjectConfig", "ServerConfig", "load", "loads", "reference", "render", "resolve_path",
]


def resolve_path(path: str | None) -> str | None:
    """The file to read: the given one, $SCANNER_CONFIG, or the default if it exists."""
    if path:
        return path
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    return DEFAULT_PATH if os.path.exists(DEFAULT_PATH) else None


def load(path: str | None) -> Config:
    """Read and validate ``path`` (None = shipped defaults only)."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the configuration file is not UTF-8 text") from None
    return loads(text, path)


def loads(text: str, source: str = "<string>") -> Config:
    """Validate TOML text; ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    data = dict(data)
    data["source"] = source
    config = build(Config, data, "", source)
    _check_semantics(config)
    return config


def _check_semantics(config: Config) -> None:
    src = config.source
    for key, nets in (("server.xforward_hosts", config.server.xforward_hosts),
                      ("policy.mynetworks", config.policy.mynetworks)):
        for i, net in enumerate(nets):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(f"{src}: '{key}[{i}]' = {net!r} is not an IP network "
                                  "(e.g. 127.0.0.0/8)") from None
    _check_address_patterns(config)
    _check_sql_lookup(config)
    check_ldap(config)
    if not config.reinject.host.strip():
        raise ConfigError(f"{src}: 'reinject.host' is empty; give the address of Postfix's "
                          "reinjection smtpd (e.g. 127.0.0.1)")
    if not config.listeners:
        raise ConfigError(f"{src}: 'listeners' is empty; give at least one [[listeners]] table")
    addresses: list[IPAddress | None] = []
    for i, lst in enumerate(config.listeners):
        if lst.path:
            _check_listener_path(config, i)
            addresses.append(None)  # no TCP address: the overlap checks leave it out
        else:
            try:
                addresses.append(ipaddress.ip_address(lst.address))
            except ValueError:
                raise ConfigError(
                    f"{src}: 'listeners[{i}].address' = {lst.address!r} is not an IP address"
                ) from None
        _check_listener_bank(config, i, lst.policy_bank)
    _check_listener_overlap(config, addresses)
    _check_reinject_loop(config, addresses)


def _covers(listener: IPAddress, address: IPAddress) -> bool:
    """Does a socket bound to ``listener`` take connections to ``address`` (same port)?
    0.0.0.0 takes every IPv4 address, :: every address (Linux binds it dual-stack)."""
    if listener == address or (listener.is_unspecified and listener.version == 6):
        return True
    return listener.is_unspecified and address.version == 4


def _check_listener_path(config: Config, i: int) -> None:
    """A Unix socket listener: an absolute path Linux can bind, used once."""
    path = config.listeners[i].path
    key = f"{config.source}: 'listeners[{i}].path' = {path!r}"
    if not os.path.isabs(path):
        raise ConfigError(f"{key} is not an absolute path")
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise ConfigError(f"{key} is longer than {MAX_PATH_BYTES} bytes (a Unix socket's "
                          "limit)")
    if path == config.quarantine.ampdp_socket:
        raise ConfigError(f"{key} is also quarantine.ampdp_socket; give each its own path")
    for j in range(i):
        if config.listeners[j].path == path:
            raise ConfigError(f"{config.source}: 'listeners[{i}]' repeats the path of "
                              f"'listeners[{j}]' ({path})")


def _check_listener_overlap(config: Config, addresses: list[IPAddress | None]) -> None:
    """Two listeners on one port must not take the same connections: ``scanner serve``
    could not bind the second one (Address already in use)."""
    for i, (lst, addr) in enumerate(zip(config.listeners, addresses, strict=True)):
        for j in range(i):
            other, prev = config.listeners[j], addresses[j]
            if addr is None or prev is None or other.port != lst.port:
                continue
            if addr == prev:
                raise ConfigError(f"{config.source}: 'listeners[{i}]' repeats "
                                  f"{lst.address}:{lst.port}")
            if _covers(prev, addr) or _covers(addr, prev):
                raise ConfigError(
                    f"{config.source}: 'listeners[{i}]' {lst.address}:{lst.port} overlaps "
                    f"'listeners[{j}]' {other.address}:{other.port} (0.0.0.0 and :: take the "
                    "port on every address); give one of them another port")


def _reinject_addresses(host: str) -> list[IPAddress]:
    """The addresses ``reinject.host`` names, as far as we can tell without DNS."""
    if host.lower() in ("localhost", "localhost."):
        return [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        return []


def _check_reinject_loop(config: Config, addresses: list[IPAddress | None]) -> None:
    """The next hop must not be one of our own listeners: every message would come back
    to us for ever."""
    hop = config.reinject
    for target in _reinject_addresses(hop.host):
        for lst, addr in zip(config.listeners, addresses, strict=True):
            if addr is not None and lst.port == hop.port and _covers(addr, target):
                raise ConfigError(
                    f"{config.source}: 'reinject.port' {hop.port} is one of our own "
                    f"listeners ({lst.address}:{lst.port}); it must point at Postfix's "
                    "reinjection smtpd (a mail loop otherwise)")


def _check_sql_lookup(config: Config) -> None:
    """A policy SQL URL of another kind would stop every worker at its start."""
    url = config.policy.sql_lookup
    if not url:
        return
    if url.startswith("sqlite:") and url[len("sqlite:"):].strip():
        return
    if is_postgresql(url):
        return
    amavis = config.policy.sql_lookup_tables == "amavis"
    if amavis and url.startswith(("mysql://", "mariadb://")):
        return
    mysql = ", 'mysql://user:password@host/dbname'" if amavis else ""
    raise ConfigError(f"{config.source}: 'policy.sql_lookup' = {redact(url)!r}: use "
                      f"'sqlite:/path/to/file', 'postgresql://user@host/dbname'{mysql} (or "
                      "\"\" for no SQL lookups)")


def _check_listener_bank(config: Config, index: int, bank: str) -> None:
    """A listener's bank must exist: a misspelt name would give that listener's mail
    the inbound policy (spam-checked, not DKIM-signed) without a word."""
    known = {*config.policy_banks, *BUILTIN_BANKS}
    if not bank or bank in known:
        return
    where = f"{config.source}: 'listeners[{index}].policy_bank' = {bank!r}"
    same = [name for name in sorted(known) if name.upper() == bank.upper()]
    if same:
        raise ConfigError(f"{where}: bank names are case-sensitive; write {same[0]!r}")
    raise ConfigError(
        f"{where} names no policy bank; use one of {sorted(known)} or define "
        f"[policy_banks.{bank}] (an empty table makes it a label for the checks' "
        "policy_banks settings without changing the policy)")


def policy_tables(config: Config) -> list[tuple[str, object]]:
    """``[policy]``, each policy bank and each per-recipient table, with its key path."""
    tables: list[tuple[str, object]] = [("policy", config.policy)]
    tables += [(f'policy_banks."{n}"', bank) for n, bank in config.policy_banks.items()]
    tables += [(f'policy.recipients."{n}"', t) for n, t in config.policy.recipients.items()]
    return tables


def _check_address_patterns(config: Config) -> None:
    """Recipient table keys hold address patterns, which all have an @ (a bare domain
    never matches: amavis's form is @domain or @.domain); each policy table's values
    are checked by :func:`check_policy_table`."""
    src = config.source
    for pattern in config.policy.recipients:
        check_recipient_pattern(src, f'policy.recipients."{pattern}"', pattern)
    for where, table in policy_tables(config):
        check_policy_table(config, src, where, table)


def check_recipient_pattern(src: str, where: str, pattern: str) -> None:
    """A recipient table's key (or a policy SQL row's pattern) is an address pattern."""
    if "@" not in pattern:
        raise ConfigError(f"{src}: '{where}': {pattern!r} is not an address pattern and "
                          f"never matches; write '@{pattern}' for the domain, '@.{pattern}' "
                          f"for it and its subdomains, or 'user@{pattern}'")


def _sender_patterns(where: str, table: object) -> list[tuple[str, str]]:
    """(how the error names it, pattern) of every sender pattern of a policy table: the
    sender lists' entries and the keys of ``sender_scores``."""
    found = [(f"'{where}.{name}[{i}]' = {pattern!r}", pattern)
             for name in ("allow_senders", "block_senders", "allow_senders_dkim")
             for i, pattern in enumerate(getattr(table, name, None) or ())]
    found += [(f"'{where}.sender_scores.\"{pattern}\"'", pattern)
              for pattern in getattr(table, "sender_scores", None) or {}]
    return found


def check_policy_table(config: Config, src: str, where: str, table: object) -> None:
    """The checks beyond types and choices that a [policy] table, a bank, a recipient
    table or a policy SQL row (scanner.policy.sql) must pass; ``src`` and ``where``
    name it in the ConfigError."""
    for label, pattern in _sender_patterns(where, table):
        if "@" not in pattern and pattern != "<>":
            raise ConfigError(
                f"{src}: {label} never matches; write '@{pattern}' for the domain, "
                f"'@.{pattern}' for it and its subdomains, 'user@{pattern}', or '<>' for "
                "the null sender")
    _check_notify_admin(src, where, getattr(table, "notify_admin", None) or {})
    for key in ("quarantine_to", "archive_to"):
        _check_copy_address(src, f"{where}.{key}", getattr(table, key, None) or "")
    _check_archive_directory(config, src, f"{where}.archive_directory",
                             getattr(table, "archive_directory", None) or "")
    check_disclaimers(src, where, table, bool(config.policy.local_domains),
                      [o for _, t in policy_tables(config)
                       for o in (getattr(t, "disclaimer_options", None) or {}).values()])
    if getattr(table, "notify_recipient", None) and not config.policy.local_domains:
        # an empty list calls every recipient local: outsiders would be told too
        raise ConfigError(f"{src}: '{where}.notify_recipient' needs "
                          "'policy.local_domains': only local recipients are told, "
                          "so list your domains there")


NOTIFY_CATEGORIES = ("virus", "banned", "unchecked", "spam", "bad_header")
"""The keys of ``notify_admin`` (scanner.actions.notify.KEYS' values)."""


def _check_notify_admin(src: str, where: str, table: Mapping[str, str]) -> None:
    """A mistyped category (``viruz``) would silently never notify anyone."""
    for key, address in table.items():
        if key not in NOTIFY_CATEGORIES:
            raise ConfigError(f"{src}: '{where}.notify_admin.{key}': no such category; use "
                              + ", ".join(NOTIFY_CATEGORIES))
        if not isinstance(address, str) or not address or any(c.isspace() for c in address):
            raise ConfigError(f"{src}: '{where}.notify_admin.{key}' = {address!r} is not "
                              "an address (user@example.com)")


def _check_copy_address(src: str, key: str, address: str) -> None:
    """amavis's ``$*_quarantine_to`` and ``archive_quarantine_to`` also take a file name
    (``virus-quarantine``); here they are mailboxes, and a name the next hop refuses
    would defer every message that needs the copy."""
    local, at, domain = address.rpartition("@")
    if address and (not at or not local or not domain or any(c.isspace() for c in address)
                    or "<" in address or ">" in address):
        hint = ("held mail is stored in quarantine.directory anyway, so leave it empty "
                "unless a mailbox should get a copy too") if key.endswith("quarantine_to") \
            else ("archive_to is a mailbox that gets a copy of every message; "
                  "archive_directory writes them to files")
        raise ConfigError(f"{src}: '{key}' = {address!r} is not an address "
                          f"(user@example.com); {hint}")


def _check_archive_directory(config: Config, src: str, key: str, directory: str) -> None:
    """An archive directory is absolute and outside the quarantine's: the quarantine's
    sweep removes files it has no index row for, and reindex would list them as held."""
    if not directory:
        return
    where = f"{src}: '{key}' = {directory!r}"
    if not os.path.isabs(directory):
        raise ConfigError(f"{where}: write an absolute path (/var/lib/scanner/archive)")
    archive = os.path.normpath(directory)
    quarantine = os.path.normpath(config.quarantine.directory)
    if os.path.commonpath([archive, quarantine]) in (archive, quarantine):
        raise ConfigError(f"{where} overlaps 'quarantine.directory' ({quarantine!r}), "
                          "whose expiry removes files it holds no index row for; put the "
                          "archive beside it (/var/lib/scanner/archive)")


def render(config: Config) -> str:
    """The effective configuration as TOML text (for ``scanner config show``), the
    database URLs and the LDAP bind password without their passwords (``***``)."""
    plain = to_plain(config)
    plain["policy"]["sql_lookup"] = redact(plain["policy"]["sql_lookup"])
    plain["policy"]["ldap_lookup"] = redact(plain["policy"]["ldap_lookup"])
    plain["policy"]["ldap_bind_password"] = redacted_password(
        plain["policy"]["ldap_bind_password"])
    plain["quarantine"]["index"] = redact(plain["quarantine"]["index"])
    plain["sql_log"]["database"] = redact(plain["sql_log"]["database"])
    penpals = plain["checks"]["settings"].get("penpals")
    if isinstance(penpals, dict) and isinstance(penpals.get("database"), str):
        penpals["database"] = redact(penpals["database"])  # may be a PostgreSQL URL
    source = plain.pop("source")
    listeners = plain.pop("listeners")
    lines = [f"# effective configuration (read from {source}, defaults filled in)"]
    for section, values in plain.items():
        _table(lines, _key(section), values)
    for lst in listeners:
        lines.append("\n[[listeners]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in lst.items())
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    bare = name.replace("_", "").replace("-", "").isalnum() and name.isascii()
    return name if bare else json.dumps(name, ensure_ascii=False)


def _table(lines: list[str], header: str, values: dict) -> None:
    """One TOML table, its scalar keys first, then its sub-tables."""
    scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in values.items() if isinstance(v, dict)}
    if scalars or not tables:
        lines.append(f"\n[{header}]")
        lines.extend(f"{_key(k)} = {_toml_value(v)}" for k, v in scalars.items())
    for k, v in tables.items():
        _table(lines, f"{header}.{_key(k)}", v)


def reference() -> str:
    """Markdown tables of every key: section, key, default and meaning (for the README)."""
    import dataclasses

    out: list[str] = []

    def table(title: str, cls: type) -> None:
        out.append(f"\n#### `{title}`\n\n{(cls.__doc__ or '').strip()}\n")
        out.append("| key | default | meaning |\n|---|---|---|")
        instance = cls()
        for f in dataclasses.fields(cls):
            value = getattr(instance, f.name)
            default = "(unset)" if value is None else _toml_value(to_plain(value))
            meaning = f.metadata.get("help", "")
            choices = f.metadata.get("choices")
            if choices:
                each = "each " if default.startswith("[") else ""  # an array
                meaning += f" ({each}one of: " + ", ".join(choices) + ")"
            out.append(f"| `{f.name}` | `{default}` | {meaning} |")

    table("[server]", ServerConfig)
    table("[[listeners]]", ListenerConfig)
    table("[reinject]", ReinjectConfig)
    table("[policy]", PolicyConfig)
    fixed = [f"`{name}`" for name in NOT_OVERRIDABLE]
    out.append("\nPolicy banks (`[policy_banks.NAME]`) and per-recipient tables "
               "(`[policy.recipients.\"PATTERN\"]`) take any `[policy]` key except "
               f"{', '.join(fixed[:-1])} and {fixed[-1]}.")
    table("[decode]", DecodeConfig)
    table("[checks]", ChecksConfig)
    table("[quarantine]", QuarantineConfig)
    table("[notices]", NoticesConfig)
    table("[sql_log]", SqlLogConfig)
    return "\n".join(out) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):  # JSON's escapes are valid in a TOML basic string
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)

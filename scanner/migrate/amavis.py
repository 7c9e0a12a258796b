"""``scanner config from-amavis``: an amavis configuration turned into scanner.toml.

Reads amavis's Perl configuration files (Debian's ``/usr/share/amavis/conf.d`` and
``/etc/amavis/conf.d`` in ``run-parts`` order, or an ``amavisd.conf``) with
:mod:`scanner.migrate.perlconf`, keeps the last assignment of every variable, maps the
settings that have a scanner equivalent onto ``scanner.toml`` keys (each with a comment
naming the amavis variable and where it was set), and lists every other assignment at
the end, grouped by why it was not converted, so an administrator can go through them.
The result is validated as a scanner configuration before it is returned. The mapping
tables live in :mod:`scanner.migrate.amavis_tables`, the TOML output in
:mod:`scanner.migrate.amavis_render`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner import config as cfgmod
from scanner.config import _toml_value
from scanner.errors import ConfigError
from scanner.migrate.amavis_ampdp import ampdp_port
from scanner.migrate.amavis_av import map_av_scanners
from scanner.migrate.amavis_copies import map_copies
from scanner.migrate.amavis_disclaimer import map_disclaimers
from scanner.migrate.amavis_files import map_entries, recipient_flags
from scanner.migrate.amavis_ldap import map_ldap
from scanner.migrate.amavis_notices import call_note, map_notices
from scanner.migrate.amavis_render import render
from scanner.migrate.amavis_scores import map_score_senders
from scanner.migrate.amavis_senders import map_sender_lists
from scanner.migrate.amavis_sqllog import map_sql_log, map_sql_lookup
from scanner.migrate.amavis_tables import (
    ADMINS,
    ADVICE,
    DEFANG,
    FLAG_MAPS,
    KINDS,
    LISTENER_VARS,
    PATH_VARS,
    PROGRAM_VARS,
    REINJECT_VARS,
    SCALARS,
    WARN_RECIPIENT,
    as_flag,
)
from scanner.migrate.perlconf import UNREAD, Constant, Statement, read_files

DEBIAN_DIRS = (Path("/usr/share/amavis/conf.d"), Path("/etc/amavis/conf.d"))
SINGLE_FILES = (Path("/etc/amavisd.conf"), Path("/etc/amavis/amavisd.conf"),
                Path("/usr/local/etc/amavisd.conf"))
_RUN_PARTS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

# amavis's ORIGINATING bank that only marks mail as our users' own (Debian's examples)
_PLAIN_ORIGINATING = re.compile(r"^\{\s*originating\s*=>\s*1\s*,?\s*\}$")
_BYPASS_SPAM_ONE = re.compile(r"bypass_spam_checks_maps\s*=>\s*\[\s*1\s*\]")

_METHOD = re.compile(r"^(smtp|lmtp):\[?([^\]\s]+?)\]?:(\d+)$")

@dataclass(slots=True)
class Note:
    """An amavis assignment that was not converted, and why."""

    where: str
    target: str
    text: str
    reason: str


@dataclass(slots=True)
class Conversion:
    """What ``from-amavis`` made of a set of amavis files."""

    files: list[str]
    sections: dict[str, dict[str, tuple[Any, str]]] = field(default_factory=dict)
    listeners: list[dict[str, Any]] = field(default_factory=list)
    listener_origin: str = ""
    notes: list[Note] = field(default_factory=list)
    predefined: dict[str, str] = field(default_factory=dict)

    def set(self, section: str, key: str, value: Any, origin: str) -> None:
        self.sections.setdefault(section, {})[key] = (value, origin)

    def note(self, statement: Statement, reason: str) -> None:
        self.notes.append(Note(statement.where, statement.target or "", statement.text,
                               reason))


def config_files(paths: Iterable[Path]) -> list[Path]:
    """The files to read: files as given, directories as ``run-parts --list`` lists them."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            try:
                names = sorted(p.name for p in path.iterdir())
            except OSError as exc:
                raise ConfigError(f"{path}: cannot list the amavis configuration directory: "
                                  f"{exc.strerror}") from None
            found += [path / n for n in names
                      if _RUN_PARTS_NAME.match(n) and (path / n).is_file()]
        elif path.exists():
            found.append(path)
        else:
            raise ConfigError(f"{path}: no such amavis configuration file or directory")
    return found


def default_paths() -> list[Path]:
    """Debian's conf.d directories if present, else the first amavisd.conf found."""
    dirs = [d for d in DEBIAN_DIRS if d.is_dir()]
    if dirs:
        return dirs
    for path in SINGLE_FILES:
        if path.exists():
            return [path]
    raise ConfigError("no amavis configuration found (looked for "
                      + ", ".join(str(p) for p in (*DEBIAN_DIRS, *SINGLE_FILES))
                      + "); name the files or directories to convert")


def convert(paths: list[Path], predefined: dict[str, str] | None = None) -> Conversion:
    """Read the amavis files and map what can be mapped."""
    files = config_files(paths)
    if not files:
        raise ConfigError(f"{', '.join(map(str, paths))}: no amavis configuration files "
                          "there (run-parts names only: letters, digits, '_' and '-')")
    for path in files:
        try:
            path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the amavis configuration file: "
                              f"{exc.strerror}") from None
    statements = read_files(files, {"myproduct_name": "amavis", **(predefined or {})})
    if not any(statement.target for statement in statements):
        raise ConfigError(f"{', '.join(map(str, files))}: no amavis settings there (every "
                          "assignment is commented out, as in amavisd.conf-default); name "
                          "the configuration amavisd reads (amavisd -c FILE)")
    conversion = Conversion(files=[str(f) for f in files], predefined=dict(predefined or {}))
    last = _last_assignments(statements, conversion)
    _map(last, conversion)
    return conversion


def _last_assignments(statements: list[Statement], conversion: Conversion
                      ) -> dict[str, Statement]:
    last: dict[str, Statement] = {}
    for statement in statements:
        if not statement.target:
            conversion.note(statement, call_note(statement)
                            or f"{statement.reason}: not converted")
            continue
        last[statement.target] = statement
    return last


def _map(last: dict[str, Statement], conv: Conversion) -> None:
    handled: set[str] = set()
    for target, statement in last.items():
        if target in SCALARS or target in FLAG_MAPS or target in ADMINS:
            handled.add(target)
            if target == "$myhostname" and "`hostname" in statement.text:
                conv.note(statement, "this host's own name: scanner finds it itself "
                                     "(server.hostname left empty)")
            elif target in FLAG_MAPS and _only_empty_tables(statement, last, conv):
                conv.set("policy", FLAG_MAPS[target], False,
                         f"{target} ({statement.where}): amavis's own tables, empty here")
            elif statement.value is UNREAD:
                conv.note(statement, _unread(statement))
            elif target in SCALARS:
                _scalar(statement, conv)
            elif target in FLAG_MAPS and not recipient_flags(statement, FLAG_MAPS[target],
                                                             conv):
                _flag_map(statement, conv)
    _admins(last, conv, handled)
    _flag_lists(last, conv, handled)
    _lists(last, conv, handled)
    _listeners(last, conv, handled)
    _reinject(last, conv, handled)
    _status_file(last, conv, handled)
    map_av_scanners(last, conv, handled)
    map_copies(last, conv, handled)
    map_disclaimers(last, conv, handled)
    map_ldap(last, conv, handled)
    map_notices(last, conv, handled)
    map_sender_lists(last, conv, handled)
    map_score_senders(last, conv, handled)
    map_sql_log(last, conv, handled)
    map_sql_lookup(last, conv, handled)
    for target, statement in last.items():
        if target not in handled:
            conv.note(statement, _why_not(statement, conv.predefined))


def _only_empty_tables(statement: Statement, last: dict[str, Statement],
                       conv: Conversion) -> bool:
    """Debian's ``@bypass_virus_checks_maps = (\\%bypass_virus_checks,
    \\@bypass_virus_checks_acl, \\$bypass_virus_checks_re)`` (15-content_filter_mode,
    uncommented to turn the checks on) names amavis's own tables; they are empty unless
    a file fills them, and empty tables bypass nobody."""
    base = statement.target[1:].removesuffix("_maps")
    value = statement.text.split("=", 1)[-1].strip()
    form = rf"\(\s*\\%{base}\s*,\s*\\@{base}_acl\s*,\s*\\\${base}_re\s*,?\s*\)"
    if statement.value is not UNREAD or not re.fullmatch(form, value):
        return False
    tables = {base, f"{base}_acl", f"{base}_re"}
    filled = any(t[1:].split("{")[0] in tables for t in last)
    return not filled and not any(base in note.text for note in conv.notes)


def _unread(statement: Statement) -> str:
    advice = ADVICE.get(statement.target) or ADVICE.get(statement.target.split("{")[0])
    text = f"the value could not be read ({statement.reason})"
    unknown = re.search(r"uses \$(\w+), whose value is not known", statement.reason)
    if unknown:
        text += f"; give it with --set {unknown.group(1)}=VALUE"
    return f"{text}; {advice}" if advice else text


def _why_not(statement: Statement, predefined: dict[str, str]) -> str:
    target = statement.target
    base = target.split("{")[0]
    advice = ADVICE.get(target) or ADVICE.get(base)
    if advice:
        return advice
    if target in PATH_VARS or target.startswith("$ENV{"):
        return ("a path, user or environment setting of amavis's installation; scanner's "
                "own are described in README \"Install\"")
    if target in PROGRAM_VARS:
        return ("an external decoder program: scanner decodes with libraries "
                "(README \"Decoding\"); nothing to set")
    if statement.value is UNREAD:
        return f"the value could not be read ({statement.reason}); " + _set_hint(target,
                                                                               predefined)
    return "no scanner equivalent"


def _set_hint(target: str, predefined: dict[str, str]) -> str:
    """What ``--set`` did or can do for an amavis scalar whose value could not be read."""
    name = target[1:]
    if not target.startswith("$") or not name.isidentifier():
        return "no scanner equivalent known"
    if name in predefined:
        return f"the value given with --set {name}={predefined[name]} is used instead"
    return (f"no scanner equivalent; later settings that use ${name} are listed here too "
            f"unless you give it with --set {name}=VALUE")


def _scalar(statement: Statement, conv: Conversion) -> None:
    section, key, kind = SCALARS[statement.target]
    value = statement.value
    converted = KINDS[kind](value)
    if converted is None:
        shown = value.name if isinstance(value, Constant) else repr(value)
        conv.note(statement, f"{shown} is not a valid {kind} for {section}.{key}"
                  + (" (scanner's destinies: pass, discard, bounce, reject)"
                     if kind == "destiny" else ""))
        return
    conv.set(section, key, converted, f"{statement.target} ({statement.where})")
    if kind == "destiny" and converted == "pass":
        category = key.removesuffix("_destiny")
        conv.note(statement, f"converted ({key} = \"pass\"), but amavis also kept passed "
                  f"{category} mail in its quarantine while ${category}_quarantine_to is "
                  f"set, as it is by default: add \"{category}\" to policy."
                  "quarantine_passed to do the same")


def _flag_map(statement: Statement, conv: Conversion) -> None:
    key = FLAG_MAPS[statement.target]
    value = statement.value
    if value == [1]:
        conv.set("policy", key, True, f"{statement.target} = (1) ({statement.where}): "
                 + ("amavis did not do these checks for anyone; delete this line to have "
                    "them done" if key.startswith("bypass") else "true for everyone"))
    elif value in ([], [0]):
        conv.set("policy", key, False, f"{statement.target} ({statement.where})")
    else:
        conv.note(statement, ADVICE.get(statement.target, "per-recipient lookups: write "
                                        f"[policy.recipients.\"PATTERN\"] {key} = true"))


def _admins(last: dict[str, Statement], conv: Conversion, handled: set[str]) -> None:
    admins: dict[str, str] = {}
    origins: list[str] = []
    for target, category in ADMINS.items():
        statement = last.get(target)
        if statement is None or statement.value is UNREAD:
            continue
        if isinstance(statement.value, str) and statement.value:
            admins[category] = statement.value
            origins.append(f"{target} ({statement.where})")
    # amavis's @banned_admin_maps falls back to $virus_admin when $banned_admin is unset
    if "virus" in admins and "banned" not in admins and "$banned_admin" not in last:
        admins["banned"] = admins["virus"]
    if admins:
        conv.set("policy", "notify_admin", admins, ", ".join(origins))


def _flag_lists(last: dict[str, Statement], conv: Conversion, handled: set[str]) -> None:
    """amavis's per-category flags that become one list of categories:
    ``$warnbannedrecip`` and its kin -> ``policy.notify_recipient``, ``$defang_virus``
    and its kin -> ``policy.defang``."""
    for table, key in ((WARN_RECIPIENT, "notify_recipient"), (DEFANG, "defang")):
        categories: list[str] = []
        origins: list[str] = []
        for target, category in table.items():
            statement = last.get(target)
            if statement is None:
                continue
            handled.add(target)
            flag = None if statement.value is UNREAD else as_flag(statement.value)
            if flag is None:
                conv.note(statement, _unread(statement) if statement.value is UNREAD else
                          "a per-recipient lookup: write [policy.recipients.\"PATTERN\"] "
                          f"{key} = [\"{category}\"] for the recipients it names")
            elif flag and category not in categories:
                categories.append(category)
                origins.append(f"{target} ({statement.where})")
        if categories:
            conv.set("policy", key, categories, ", ".join(origins))


def _lists(last: dict[str, Statement], conv: Conversion, handled: set[str]) -> None:
    _local_domains(last, conv, handled)
    nets = last.get("@mynetworks")
    if nets is not None:
        handled.add("@mynetworks")
        if nets.value is UNREAD:
            conv.note(nets, _unread(nets))
        elif all(isinstance(v, str) and not v.startswith("!") for v in nets.value):
            conv.set("policy", "mynetworks", [v.strip("[]").replace("]/", "/")
                                              for v in nets.value],
                     f"@mynetworks ({nets.where})")
        else:
            conv.note(nets, ADVICE["@mynetworks"])


def _local_domains(last: dict[str, Statement], conv: Conversion, handled: set[str]) -> None:
    """``@local_domains_maps`` (a list of ACLs, e.g. ``( [".$mydomain"] )``) wins over
    ``@local_domains_acl``, as in amavis, where the maps list refers to the ACL."""
    maps, acl = last.get("@local_domains_maps"), last.get("@local_domains_acl")
    for statement in (maps, acl):
        if statement is not None:
            handled.add(statement.target)
    entries = map_entries(maps, conv) if maps is not None else None
    if maps is not None and entries is not None:
        conv.set("policy", "local_domains", entries, f"@local_domains_maps ({maps.where})")
        if acl is not None:
            conv.note(acl, "@local_domains_maps, converted instead, decides")
        return
    if maps is not None:
        conv.note(maps, _unread(maps) if maps.value is UNREAD else ADVICE["@local_domains_maps"])
    if acl is None:
        return
    if acl.value is UNREAD:
        conv.note(acl, _unread(acl))
    elif all(isinstance(v, str) for v in acl.value):
        conv.set("policy", "local_domains", list(acl.value),
                 f"@local_domains_acl ({acl.where})")
    else:
        conv.note(acl, "only strings can be converted")


def _listeners(last: dict[str, Statement], conv: Conversion, handled: set[str]) -> None:
    ports_st = last.get("$inet_socket_port")
    bind_st = last.get("$inet_socket_bind")
    handled.update(t for t in LISTENER_VARS if t in last)
    if ports_st is None or ports_st.value is UNREAD:
        if ports_st is not None:
            conv.note(ports_st, _unread(ports_st))
        return
    ports = ports_st.value if isinstance(ports_st.value, list) else [ports_st.value]
    addresses: list[Any] = ["127.0.0.1"]
    if bind_st is not None and bind_st.value is not UNREAD and bind_st.value is not None:
        addresses = bind_st.value if isinstance(bind_st.value, list) else [bind_st.value]
    elif bind_st is not None and bind_st.value is UNREAD:
        conv.note(bind_st, _unread(bind_st))
    if not all(isinstance(p, int) for p in ports) or not all(
            isinstance(a, str) for a in addresses):
        conv.note(ports_st, "ports and addresses must be numbers and strings")
        return
    for address in addresses:
        for port in ports:
            listener: dict[str, Any] = {"address": address.strip("[]"), "port": port}
            bank = last.get(f"$interface_policy{{{port}}}")
            if bank is not None and ampdp_port(last, conv, handled, bank, address, port):
                continue
            if bank is not None:
                handled.add(bank.target)
                if bank.value == "ORIGINATING":
                    listener["policy_bank"] = "ORIGINATING"
                    _originating_bank(last, conv, handled, bank)
                else:
                    conv.note(bank, ADVICE["$interface_policy"])
            conv.listeners.append(listener)
    origin = f"$inet_socket_port ({ports_st.where})"
    if bind_st is not None:
        origin += f", $inet_socket_bind ({bind_st.where})"
    conv.listener_origin = origin


def _originating_bank(last: dict[str, Statement], conv: Conversion, handled: set[str],
                      interface: Statement) -> None:
    """Write ``[policy_banks.ORIGINATING]``: scanner's built-in bank of that name skips
    spam checks, amavis's checks its users' mail for spam unless the bank says
    ``bypass_spam_checks_maps => [1]``."""
    if "policy_banks.ORIGINATING" in conv.sections:
        return
    bank = last.get("$policy_bank{ORIGINATING}")
    bypass = bank is not None and bool(_BYPASS_SPAM_ONE.search(bank.text))
    origin = f"{interface.target} ({interface.where}): "
    origin += ("amavis's bank says bypass_spam_checks_maps => [1]" if bypass else
               "amavis spam-checks mail of this bank; scanner's built-in ORIGINATING bank "
               "would not")
    if bank is not None and _PLAIN_ORIGINATING.fullmatch(bank.text.split("=", 1)[-1].strip()):
        handled.add(bank.target)
        origin += f" ($policy_bank{{'ORIGINATING'}} ({bank.where}) sets nothing else)"
    conv.set("policy_banks.ORIGINATING", "bypass_spam_checks", bypass, origin)


STATUS_FILE = "/var/lib/scanner/status"


def _status_file(last: dict[str, Statement], conv: Conversion, handled: set[str]) -> None:
    """``$enable_db`` gave amavis the database amavisd-nanny and amavisd-agent read;
    ``scanner status`` reads ``server.status_file`` (empty by default)."""
    statement = last.get("$enable_db")
    if statement is None or statement.value is UNREAD or not as_flag(statement.value):
        return
    handled.add("$enable_db")
    conv.set("server", "status_file", STATUS_FILE,
             f"$enable_db ({statement.where}): amavisd-nanny's database; `scanner status` "
             "reads this file")


def _reinject(last: dict[str, Statement], conv: Conversion, handled: set[str]) -> None:
    forward = last.get("$forward_method")
    notify = last.get("$notify_method")
    handled.update(t for t in REINJECT_VARS if t in last)
    if forward is None:
        if notify is not None:
            conv.note(notify, "scanner sends notices and DSNs to the same next hop as mail "
                              "([reinject])")
        return
    m = _METHOD.match(forward.value) if isinstance(forward.value, str) else None
    if not m:
        conv.note(forward, f"{forward.value!r} is not smtp:[HOST]:PORT or lmtp:[HOST]:PORT")
        return
    origin = f"$forward_method ({forward.where})"
    conv.set("reinject", "protocol", m.group(1), origin)
    conv.set("reinject", "host", m.group(2), origin)
    conv.set("reinject", "port", int(m.group(3)), origin)
    if notify is not None and notify.value != forward.value:
        conv.note(notify, "scanner sends notices and DSNs to the same next hop as mail "
                          "([reinject])")


_NEEDS = {("policy", "notify_recipient"): ("local_domains",),
          ("policy", "allow_disclaimers"): ("local_domains",),
          ("policy", "ldap_lookup"): ("ldap_base", "ldap_query_filter", "ldap_bind_dn",
                                      "ldap_tls"),
          ("policy", "ldap_bind_password"): ("ldap_lookup", "ldap_base", "ldap_bind_dn")}


def _drop_invalid(conv: Conversion) -> None:
    """Move a converted value scanner refuses (e.g. ``$max_servers = 0``) to the notes."""
    for section, values in conv.sections.items():
        for key, (value, origin) in list(values.items()):
            # a key that needs another one is checked with it (notify_recipient needs
            # local_domains)
            context = "".join(f"{k} = {_toml_value(values[k][0])}\n" for k in _NEEDS.get(
                (section, key), ()) if k in values)
            try:
                cfgmod.loads(f"[{section}]\n{context}{key} = {_toml_value(value)}\n",
                             "amavis")
            except ConfigError as exc:
                del values[key]
                reason = str(exc).removeprefix("amavis: ")
                conv.notes.append(Note(origin, key, f"{key} = {_toml_value(value)}",
                                       f"scanner refuses the converted value ({reason})"))


def convert_to_toml(paths: list[Path], predefined: dict[str, str] | None = None
                    ) -> tuple[str, Conversion]:
    """Convert and check that scanner accepts the result (a ConfigError names the key)."""
    conv = convert(paths, predefined)
    _drop_invalid(conv)
    text = render(conv)
    cfgmod.loads(text, "the converted configuration")
    return text, conv

"""from-amavis: lookup tables amavis reads from files (``read_hash``, ``read_array``).

amavis sites often keep their local domains in a file, ``@local_domains_maps = (
read_hash("/etc/amavis/local_domains") )``. The converter reads such a file as amavis
does (Amavis::Util ``read_hash``/``read_array``: ``#`` starts a comment outside double
quotes, the first word is the key, the rest of the line its value, 1 when there is none)
and writes its entries into the TOML, so the file must be readable where from-amavis
runs; a later change to it needs another conversion.

A hash table answers with its most specific key (Amavis::Lookup ``lookup_hash``: the
address, ``user@``, the domain, then ``.sub.domain``, ``.domain``, ..., ``.``), an ACL
with its first matching entry. :func:`hash_as_acl` orders a hash's keys so that the
first ACL entry to match is the key the hash lookup would find: addresses, then
domains, then ``.domains`` with the most labels first, then ``.``; a false value (``0``,
or empty) becomes a ``!`` entry.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from scanner.idn import fold_domain
from scanner.migrate.perlconf import UNREAD, FileTable, Statement

_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|[^#" \t]+|[ \t]+|.', re.S)


class TableFileError(Exception):
    """The file cannot be read; the message names it."""


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError as exc:
        raise TableFileError(f"{path}: {exc.strerror or exc}") from None


def _split(line: str) -> tuple[str, str]:
    """A line as amavis's read_hash splits it: key and value, the comment cut off."""
    key, value, at_value = "", "", False
    for token in _TOKEN.findall(line):
        if token == "#":
            break
        if not at_value and token.strip(" \t") == "":
            at_value = True
        elif at_value:
            value += token
        else:
            key += token
    return key, value.rstrip(" \t")


def _unquote(text: str) -> str:
    """A double-quoted local part as amavis's unquote_rfc2821_local leaves it."""
    return re.sub(r'"((?:\\.|[^"\\])*)"', lambda m: re.sub(r"\\(.)", r"\1", m[1]), text)


def _key(text: str) -> str:
    """The key as amavis stores it: the local part lower-cased, the domain in A-labels."""
    text = _unquote(text)
    local, at, domain = text.rpartition("@")
    if not at:
        return fold_domain(text) if text not in ("", ".") else text
    return f"{local.lower()}@{fold_domain(domain) if domain else ''}"


def read_hash(path: str) -> dict[str, str]:
    """The keys and values of a read_hash file (later lines replace earlier ones)."""
    table: dict[str, str] = {}
    for line in _lines(path):
        key, value = _split(line)
        if key or value:
            table[_key(key)] = value if value != "" else "1"
    return table


def read_array(path: str) -> list[str]:
    """The entries of a read_array file, in order."""
    entries = []
    for line in _lines(path):
        key, value = _split(line)
        entry = (key + (" " + value if value else "")).rstrip(" \t")
        if entry:
            entries.append(_unquote(entry))
    return entries


def hash_as_acl(table: dict[str, str]) -> tuple[list[str], list[str]]:
    """The ACL entries that answer as ``table`` does for a domain lookup, and the keys
    that have no ACL form (``user@``: a local part in any domain)."""
    addresses, domains, subtrees, everything, left = [], [], [], [], []
    for key, value in table.items():
        entry = key if value not in ("0", "") else f"!{key}"
        if key.endswith("@"):
            left.append(key)
        elif "@" in key:
            addresses.append(entry)
        elif key == ".":
            everything.append(entry)
        elif key.startswith("."):
            subtrees.append((-key.count("."), key, entry))
        else:
            domains.append(entry)
    ordered = addresses + domains + [e for _, _, e in sorted(subtrees)] + everything
    return ordered, left


def readable(value: Any, kinds: tuple[str, ...] = ("hash", "array")) -> bool:
    """Whether a maps value is a list of tables this converter reads: lists of strings,
    and ``read_hash``/``read_array`` files of ``kinds``."""
    return value is not UNREAD and isinstance(value, list) and all(
        isinstance(t, FileTable) and t.kind in kinds
        or isinstance(t, list) and all(isinstance(v, str) for v in t) for t in value)


def table_entries(table: FileTable | list[str]) -> list[tuple[str, bool]]:
    """(entry, listed) of one table: a list or read_array file read as an ACL (``!entry``:
    not listed), a read_hash file (a value ``0``: not listed); raises TableFileError."""
    if isinstance(table, FileTable):
        if table.kind == "hash":
            return [(key, value != "0") for key, value in read_hash(table.path).items()]
        table = read_array(table.path)
    return [(v[1:], False) if v.startswith("!") else (v, True) for v in table]


def read_entries(statement: Statement, tables: list[Any], conv: Any, instead: str
                 ) -> list[tuple[Any, str, bool]] | None:
    """(table, entry, listed) of each table in turn (:func:`table_entries`), or None when
    a file cannot be read (noted, with ``instead`` as the advice)."""
    found: list[tuple[Any, str, bool]] = []
    for table in tables:
        try:
            found += [(table, entry, listed) for entry, listed in table_entries(table)]
        except TableFileError as exc:
            note_unreadable(statement, table, exc, conv, instead)
            return None
    return found


def note_unreadable(statement: Statement, table: FileTable, exc: Exception, conv: Any,
                    instead: str) -> None:
    """Note a table file that cannot be read where from-amavis runs."""
    conv.note(statement, f"read_{table.kind}() file cannot be read here ({exc}); run "
              f"from-amavis where it can, or {instead}")


def as_pattern(entry: str) -> str:
    """A hash key or ACL entry as a pattern of scanner's recipient tables and sender
    lists: ``example.com`` -> ``@example.com``, ``.example.com`` -> ``@.example.com``."""
    if "@" in entry or entry == "<>":
        return entry
    return "@." if entry == "." else f"@{entry}"


def map_entries(maps: Statement, conv: Any) -> list[str] | None:
    """``@local_domains_maps`` as one ACL: its lists of strings, and its read_hash and
    read_array files read now; None when a table cannot be converted (a Perl hash or
    regex, a file that cannot be read: noted)."""
    if not readable(maps.value):
        return None
    entries: list[str] = []
    for table in maps.value:
        try:
            if not isinstance(table, FileTable) or table.kind == "array":
                entries += [f"!{e}" if not listed else e for e, listed in
                            table_entries(table)]
                continue
            acl, left = hash_as_acl(read_hash(table.path))
        except TableFileError as exc:
            note_unreadable(maps, table, exc, conv, "write policy.local_domains by hand")
            return None
        entries += acl
        if left:
            conv.note(maps, f"{table.path}: {', '.join(left)}: a user name in every domain "
                      "has no local_domains form; left out (write full addresses)")
    return entries


def recipient_flags(statement: Statement, key: str, conv: Any) -> bool:
    """A ``@..._lovers_maps`` or ``@bypass_..._maps`` whose tables are read_hash files
    and lists of addresses and domains, as ``[policy.recipients."PATTERN"] KEY = true``
    (or false) tables; ``.`` (everyone) as the ``[policy]`` key itself. The recipient
    tables answer with their most specific pattern, as a hash lookup does; a list's
    negated entries (``!...``), whose first-match order a pattern table cannot keep, are
    noted. False when the value has other tables (a Perl hash, a regex) or no file (the
    caller's own rules): nothing set."""
    if not readable(statement.value, ("hash",)) or not any(
            isinstance(t, FileTable) for t in statement.value):
        return False
    entries = read_entries(statement, statement.value, conv,
                           "write the recipient tables by hand")
    if entries is None:
        return True
    flags: dict[str, bool] = {}
    for table, entry, value in entries:
        if not value and not isinstance(table, FileTable):
            conv.note(statement, f"'!{entry}': a negated entry is left out")
            continue
        flags.setdefault(as_pattern(entry), value)  # the first table that has it decides
    origin = f"{statement.target} ({statement.where})"
    for pattern, value in flags.items():
        if pattern == "@.":
            conv.set("policy", key, value, origin)
        else:
            conv.set(f"policy.recipients.{json.dumps(pattern, ensure_ascii=False)}", key,
                     value, origin)
    return True

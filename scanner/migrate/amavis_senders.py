"""from-amavis: amavis's sender white- and blacklists as ``policy.allow_senders`` and
``policy.block_senders``.

amavis's ``@whitelist_sender_maps`` and ``@blacklist_sender_maps`` are lists of lookup
tables; the usual ones are a list of strings (an ACL: ``user@example.com``,
``example.com``, ``.example.com`` for the domain and its subdomains) and a file read
with ``read_hash`` (its keys: ``user@example.com``, ``user@``, ``example.com``,
``.example.com``, ``.``). ``@whitelist_sender_acl`` and ``@blacklist_sender_acl`` are
such ACLs on their own. Every entry becomes one of scanner's sender patterns (``user@dom``,
``user@``, ``@dom``, ``@.dom``); an entry that says "not listed" (``!entry``, a hash value
of ``0``) has no pattern form and is noted, as are tables that cannot be read (Perl
hashes, regular expressions) and files that cannot be read where from-amavis runs.
"""

from __future__ import annotations

from typing import Any

from scanner.migrate.amavis_files import as_pattern, read_entries, readable
from scanner.migrate.perlconf import UNREAD, Statement

LISTS = {"@whitelist_sender_maps": "allow_senders", "@whitelist_sender_acl": "allow_senders",
         "@blacklist_sender_maps": "block_senders", "@blacklist_sender_acl": "block_senders"}


def map_sender_lists(last: dict[str, Any], conv: Any, handled: set[str]) -> None:
    """Convert the white- and blacklists that can be read; note the rest."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    for target, key in LISTS.items():
        statement = last.get(target)
        if statement is None:
            continue
        handled.add(target)
        patterns = _patterns(statement, conv)
        if patterns is None:
            continue
        listed, origins = found.setdefault(key, ([], []))
        listed += [p for p in patterns if p not in listed]
        origins.append(f"{target} ({statement.where})")
    for key, (listed, origins) in found.items():
        if listed:
            conv.set("policy", key, listed, ", ".join(origins))


def _patterns(statement: Statement, conv: Any) -> list[str] | None:
    tables = statement.value
    if tables is UNREAD:
        conv.note(statement, f"the value could not be read ({statement.reason}); write the "
                  "senders into policy.allow_senders / block_senders by hand")
        return None
    if statement.target.endswith("_acl"):
        tables = [tables]
    if not readable(tables):
        conv.note(statement, "only lists of addresses and domains and read_hash/read_array "
                  "files are converted; write the others into policy.allow_senders / "
                  "block_senders by hand")
        return None
    entries = read_entries(statement, tables, conv, "list the senders by hand")
    if entries is None:
        return None
    patterns: list[str] = []
    for _, entry, listed in entries:
        if listed:
            patterns.append(as_pattern(entry))
        else:
            conv.note(statement, f"{entry!r} says 'not listed', which a sender list "
                      "cannot say; left out")
    return patterns

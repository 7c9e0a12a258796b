"""from-amavis: amavis's soft white- and blacklist ``@score_sender_maps`` as
``sender_scores`` tables.

amavis's value is a list of by-recipient hashes, ``({ '.' => [TABLES], 'boss@example.com'
=> [TABLES] })``: each recipient key that matches contributes the points of the first
of its sender tables that knows the sender, and the contributions of all matching
recipient keys are added up (Amavis::SpamControl ``white_black_list``). The sender
tables this converter reads are Perl hashes of numbers and ``read_hash`` files; the
recipient key ``.`` becomes ``[policy] sender_scores``, every other key a
``[policy.recipients."PATTERN"]`` table's. A sender table that cannot be read (a
``new_RE`` regular-expression table, a file missing here) is noted.

scanner's policy keeps one table per recipient, whose most specific sender pattern
decides: several sender tables of one recipient key are merged (the first one that has
a pattern keeps it; noted, since amavis would stop at the first table with any match),
and a recipient table also gets the ``.`` entries it does not have itself, with the
points of a pattern in both added up (amavis adds the two contributions; noted).
"""

from __future__ import annotations

import json
from typing import Any

from scanner.migrate.amavis_files import TableFileError, as_pattern, note_unreadable, read_hash
from scanner.migrate.amavis_files import _key as hash_key
from scanner.migrate.perlconf import UNREAD, FileTable, Statement

TARGET = "@score_sender_maps"


def map_score_senders(last: dict[str, Statement], conv: Any, handled: set[str]) -> None:
    """Convert ``@score_sender_maps`` when every table in it can be read; else note it."""
    statement = last.get(TARGET)
    if statement is None:
        return
    handled.add(TARGET)
    if statement.value is UNREAD:
        conv.note(statement, f"the value could not be read ({statement.reason}); write "
                  "sender_scores into [policy] or the recipient tables by hand")
        return
    by_recipient = _by_recipient(statement, conv)
    if by_recipient is None:
        return
    general = by_recipient.pop("@.", {})
    origin = f"{TARGET} ({statement.where})"
    if general:
        conv.set("policy", "sender_scores", general, origin)
    for pattern, scores in by_recipient.items():
        shared = sorted(set(scores) & set(general))
        if shared:
            conv.note(statement, f"recipient {pattern}: {', '.join(shared)} also in the '.' "
                      "tables; their points are added up here, as amavis adds them")
        merged = {**general, **{p: v + general.get(p, 0.0) for p, v in scores.items()}}
        conv.set(f"policy.recipients.{json.dumps(pattern, ensure_ascii=False)}",
                 "sender_scores", merged, origin)


def _by_recipient(statement: Statement, conv: Any) -> dict[str, dict[str, float]] | None:
    """recipient pattern -> sender pattern -> points, or None (noted) when a part of the
    value is not a by-recipient hash of sender tables this converter reads."""
    value = statement.value
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        conv.note(statement, "only by-recipient hashes ({ '.' => [...] }) are converted; "
                  "write sender_scores by hand")
        return None
    found: dict[str, dict[str, float]] = {}
    for by_recipient in value:
        for recipient, tables in by_recipient.items():
            pattern = as_pattern(hash_key(str(recipient)))
            if pattern in found:
                continue  # an earlier hash in the list answers for this key first
            scores = _sender_tables(statement, recipient, tables, conv)
            if scores is None:
                return None
            found[pattern] = scores
    return found


def _sender_tables(statement: Statement, recipient: str, tables: Any, conv: Any
                   ) -> dict[str, float] | None:
    """The sender tables of one recipient key merged into one pattern -> points table."""
    if not isinstance(tables, list):
        tables = [tables]
    merged: dict[str, float] = {}
    for table in tables:
        entries = _entries(statement, recipient, table, conv)
        if entries is None:
            return None
        for pattern, points in entries.items():
            merged.setdefault(pattern, points)
    if len(tables) > 1:
        conv.note(statement, f"recipient key {recipient!r}: {len(tables)} sender tables "
                  "merged into one, whose most specific pattern decides (amavis stops at "
                  "the first table that knows the sender)")
    return merged


def _entries(statement: Statement, recipient: str, table: Any, conv: Any
             ) -> dict[str, float] | None:
    if isinstance(table, FileTable) and table.kind == "hash":
        try:
            raw = read_hash(table.path)
        except TableFileError as exc:
            note_unreadable(statement, table, exc, conv, "write sender_scores by hand")
            return None
    elif isinstance(table, dict):
        raw = {hash_key(str(k)): v for k, v in table.items()}
    else:
        conv.note(statement, f"recipient key {recipient!r}: only Perl hashes and read_hash "
                  "files of sender -> points are converted (a new_RE table is not); write "
                  "sender_scores by hand")
        return None
    entries: dict[str, float] = {}
    for key, value in raw.items():
        try:
            points = float(value)
        except (TypeError, ValueError):
            conv.note(statement, f"sender {key!r}: {value!r} is not a number; left out")
            continue
        if points:
            entries[as_pattern(key)] = points
    return entries

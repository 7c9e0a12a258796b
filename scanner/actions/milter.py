"""Passed mail the MTA keeps (AM.PDP for a milter): the edits as milter operations.

Scanning for ``amavisd-milter`` (delivery_care_of=client), the MTA delivers the one
message it holds; instead of a copy per group of recipients, the answer carries what the
SMTP path would have changed in the copy, as AM.PDP attributes the milter applies:

* ``delheader=INDEX NAME`` for each header field a passed copy leaves out (forged
  Authentication-Results, arriving X-Spam-* when ``remove_existing_spam_headers``),
  INDEX counting fields of that name (any case) from 1, highest first so none shifts
  another;
* ``chgheader=INDEX Subject VALUE`` for each Subject field the subject tag changes;
* ``insheader=0 NAME VALUE`` for each field added on top (X-Spam-*, X-Virus-Scanned,
  X-Quarantine-ID, Authentication-Results, DKIM-Signature, a new Subject), bottom one
  first, as amavis prepends them (its ``prepend_header_fields_hdridx`` 0);
* ``delrcpt``/``addrcpt`` for a recipient whose address gets an extension.

One message means one set of header edits: as amavis (``AM.PDP: RECIPIENTS REQUIRE
DIFFERENT HEADERS``), those of the first passed recipient's group apply to all, and a
warning says so when the groups differ. No trace header is added (the MTA wrote its
own), as amavis adds none when it does not forward the mail itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from scanner.actions.body_edits import impossible_before_queue
from scanner.actions.headers import prefix_subject, without
from scanner.actions.run import (
    Context,
    Outcome,
    added_fields,
    dropped_fields,
    edit_groups,
    signature_fields,
)
from scanner.actions.tagging import Edits
from scanner.headerfields import named
from scanner.task import Task
from scanner.trace import prepend_headers

log = logging.getLogger("scanner")
Attrs = list[tuple[str, tuple[str, ...]]]


@dataclass(slots=True)
class MilterCopy:
    """The ``deliver`` step of :class:`scanner.actions.run.Context` for a milter: sets
    the passed recipients' replies to ``250 2.5.0 Ok, id=..., continue delivery``
    (action ``Accepted``, amavis's word for mail the MTA goes on delivering) and
    records what the answer must tell the milter."""

    passed: list[int] = field(default_factory=list)
    readdressed: list[tuple[str, str]] = field(default_factory=list)
    edits: Attrs = field(default_factory=list)

    async def __call__(self, task: Task, ctx: Context, out: Outcome, idx: list[int]) -> None:
        if not idx:
            return
        groups = edit_groups(task, ctx, idx)
        first = groups[0][0]
        if len(groups) > 1:
            log.warning("(%s) AM.PDP: recipients require different header edits; those of "
                        "<%s> apply to the one message the MTA delivers (as amavis)",
                        task.log_id, task.envelope.recipients[first[0]].address)
        if left_out := impossible_before_queue(first[1]):
            log.warning("(%s) AM.PDP: %s (a milter changes header fields only)",
                        task.log_id, left_out)
        self.edits = await header_operations(task, ctx, out, first[1])
        for members in groups:
            for i, edits in members:
                self.passed.append(i)
                address = task.envelope.recipients[i].address
                if edits.address != address:
                    self.readdressed.append((address, edits.address))
                out.replies[i] = f"250 2.5.0 Ok, id={task.log_id}, continue delivery"
                out.act("Accepted", ctx, task, [i])
        self.passed.sort()


async def header_operations(task: Task, ctx: Context, out: Outcome, edits: Edits) -> Attrs:
    """The AM.PDP header edits that turn ``task.raw`` into the copy a passed recipient
    with ``edits`` gets over SMTP (without our trace header)."""
    dropped = dropped_fields(task, edits.drop_spam_headers)
    ops = deletions(task.raw, dropped)
    kept = without(task.raw, dropped)
    tagged = prefix_subject(kept, edits.subject_prefix)
    ops += subject_changes(kept, tagged)
    added = added_fields(task, out, edits.headers)
    signatures = await signature_fields(task, ctx.signers, prepend_headers(tagged, added))
    for name, value in reversed([*signatures, *added]):
        ops.append(("insheader", ("0", name, milter_value(value))))
    return ops


def deletions(raw: bytes, ranges: list[tuple[int, int]]) -> Attrs:
    """``delheader`` operations for the header fields at ``ranges`` of ``raw``."""
    indexes: dict[str, tuple[str, set[int]]] = {}  # by lower-case name: the MTA counts
    for start, end in sorted(set(ranges)):  # X-Spam-Flag and x-spam-flag as one name
        colon = raw.find(b":", start, end)
        if colon < 0:
            continue
        name = raw[start:colon].rstrip(b" \t").decode("ascii", "replace")
        found = named(raw, (name,))
        index = next((n for n, f in enumerate(found, 1) if f.start == start), 0)
        if index:
            indexes.setdefault(name.lower(), (name, set()))[1].add(index)
    return [("delheader", (str(i), name)) for name, found in indexes.values()
            for i in sorted(found, reverse=True)]


def subject_changes(before: bytes, after: bytes) -> Attrs:
    """``chgheader`` for each Subject field the tag changed; ``insheader`` when the tag
    made a Subject the message did not have."""
    old, new = named(before, ("Subject",)), named(after, ("Subject",))
    if len(new) > len(old):  # prefix_subject adds one on top when there was none
        return [("insheader", ("0", "Subject", _field_value(new[0].value)))]
    return [("chgheader", (str(n), "Subject", _field_value(b.value)))
            for n, (a, b) in enumerate(zip(old, new, strict=True), 1) if a.value != b.value]


def _field_value(value: bytes) -> str:
    """A field value as found in the message (folds kept), for the milter: the blank
    after the colon left out (the MTA puts its own), LF line ends."""
    text = value.decode("utf-8", "surrogateescape").lstrip(" \t")
    return milter_value(text)


def milter_value(value: str) -> str:
    """A folded value with LF line ends (a milter's header values fold with ``\\n``;
    the MTA writes its own line ends)."""
    return value.replace("\r\n", "\n")

"""The edits of a passed copy's body: defanging (:mod:`scanner.actions.defang`) or a
disclaimer (:mod:`scanner.actions.disclaimer`), at most one per copy.

Applied to the bytes of the copy that goes to the next hop; where the MTA keeps the
message (AM.PDP for a milter, which changes header fields only) they cannot be, and
:func:`impossible_before_queue` says which one was left out.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from scanner.actions.defang import defang
from scanner.actions.disclaimer import with_disclaimer
from scanner.actions.tagging import Edits
from scanner.task import Task

if TYPE_CHECKING:
    from scanner.actions.run import Context

log = logging.getLogger("scanner")


async def edited_body(task: Task, ctx: Context, raw: bytes, edits: Edits) -> bytes:
    """``raw`` (one copy's bytes) with the body edit ``edits`` asks for."""
    if edits.defang:
        log.info("(%s) DEFANGING MAIL: %s", task.log_id, " ".join(edits.defang)[:150])
        return defang(raw, task.envelope.sender, edits.defang, task.envelope.smtputf8)
    if edits.disclaimer:
        return await ctx.run_cpu(with_disclaimer, raw, edits.disclaimer, task.log_id)
    return raw


def impossible_before_queue(edits: Edits) -> str:
    """What of ``edits`` a milter cannot do, for its warning; '' when nothing."""
    if edits.defang:
        return ("policy.defang cannot wrap a message the MTA keeps; passed as it is: "
                + " ".join(edits.defang)[:150])
    if edits.disclaimer:
        return "a disclaimer cannot go into a message the MTA keeps; passed without it"
    return ""

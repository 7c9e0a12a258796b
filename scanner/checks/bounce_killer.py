"""amavis's bounce killer: a bounce of a message none of our users sent is backscatter.

Incoming mail that :func:`scanner.bounces.inspect_bounce` recognises as a bounce (DSN,
MDN, feedback report, or a non-standard failure notice carrying the returned header) is
rescued for a recipient when

* that recipient sent the returned message (its Message-ID is in the pen pals memory)
  less than 8 days ago, as amavis's pen pals look-up; or
* the returned Message-ID's domain is one of ``policy.local_domains`` (our mail
  servers write our domain into the Message-IDs they make; amavis's second rescue;
  not applied while ``local_domains`` is empty, since then no domain is known as ours).

Otherwise the recipient gets ``BOUNCE_KILLED``, whose weight (0 in the shipped score
table, like amavis's default ``$bounce_killer_score``; amavis's documentation suggests
100) decides what it does. Mail from an ORIGINATING bank is never looked at (the pen
pals check records it instead).
"""

from __future__ import annotations

import logging
import re
import time

from scanner.bounces import Bounce, Envelope, inspect_bounce
from scanner.config.policy import PolicyConfig
from scanner.penpals_store import Store, normalise
from scanner.pipeline.parse import header_text
from scanner.policy.decide import author_address, is_auto
from scanner.policy.effective import sender_is_local
from scanner.task import Hit, Task

log = logging.getLogger("scanner.penpals")

RESCUE_AGE = 8 * 86400.0
"""A bounce of a message our user sent less than this long ago is theirs (amavis)."""
_DOMAIN = re.compile(r"@([^@>() \t][^@>]*?)[ \t]*>?\Z")


def bounce_hits(task: Task, store: Store, policy: PolicyConfig) -> list[Hit]:
    """``BOUNCE_KILLED`` for each recipient of a bounce that is not theirs."""
    bounce = inspect_bounce(task.parts, _envelope(task))
    if bounce is None:
        return []
    message_id = bounce.message_id or ""
    if _ours_by_domain(message_id, policy):
        log.debug("bounce rescued by domain (%s, %s)", bounce.kind, message_id)
        return []
    now = time.time()
    wanted = [message_id.strip("<>")] if message_id else []
    hits = []
    for rcpt in task.envelope.recipients:
        local = normalise(rcpt.address, policy.recipient_delimiter)
        sent_at = store.lookup(local, "", wanted, now).replied_at if wanted else None
        if sent_at is not None and now - sent_at < RESCUE_AGE:
            log.debug("bounce rescued by pen pals (%s, %s) for %s", bounce.kind,
                      message_id, rcpt.address)
            continue
        hits.append(_hit(bounce, rcpt.address))
    return hits


def _hit(bounce: Bounce, recipient: str) -> Hit:
    return Hit("BOUNCE_KILLED", options=(bounce.kind, bounce.message_id or "no Message-ID"),
               recipient=recipient)


def _ours_by_domain(message_id: str, policy: PolicyConfig) -> bool:
    m = _DOMAIN.search(message_id)
    return bool(m and sender_is_local(policy, f"postmaster@{m.group(1)}"))


def _envelope(task: Task) -> Envelope:
    return Envelope(task.envelope.sender, author_address(task),
                    header_text(task.message, "Subject"), is_auto(task))

"""A message's SQL log rows (:mod:`scanner.sqllog.rows`) from its task and outcome."""

from __future__ import annotations

import os
from typing import Any

from scanner.actions.run import Outcome
from scanner.pipeline.parse import header_display, header_text
from scanner.policy.decide import ALLOW, ALLOW_DKIM, BLOCK
from scanner.policy.effective import recipient_is_local
from scanner.scores import ScoreTable
from scanner.sqllog.config import SqlLogConfig
from scanner.sqllog.rows import (
    MessageRow,
    RecipientRow,
    address,
    content_letter,
    delivery_status,
    dsn_sent,
    partition_tag,
    seven_bit,
    text,
)
from scanner.task import Destiny, Task


def message_row(task: Task, outcome: Outcome, category: str, cfg: SqlLogConfig,
                hostname: str, scores: ScoreTable, quarantine_dir: str,
                default_policy: Any) -> MessageRow | None:
    """The rows of ``task`` (None: not logged, ``all_messages`` being off and the
    message not held). ``category``: the log line's (``MTA-BLOCKED`` included);
    ``default_policy``: the policy of a recipient without a verdict."""
    if not cfg.all_messages and not outcome.quarantined:
        return None
    statuses = [outcome.by_recipient.get(i, "") for i in range(len(outcome.replies))]
    rows = []
    for i, rcpt in enumerate(task.envelope.recipients):
        verdict = task.verdicts.get(rcpt.address)
        symbols = {h.symbol for h in verdict.hits} if verdict else set()
        ccat = verdict.category if verdict else category
        if i in outcome.refused and (verdict is None or verdict.destiny is Destiny.PASS):
            ccat = "MTA-BLOCKED"
        rows.append(RecipientRow(
            address=address(rcpt.address),
            is_local=recipient_is_local(verdict.policy if verdict else default_policy,
                                        rcpt.address),
            content=content_letter(ccat), ds=delivery_status(statuses[i]),
            blocklisted=BLOCK in symbols, allowlisted=bool({ALLOW, ALLOW_DKIM} & symbols),
            bspam_level=verdict.score if verdict and verdict.spam_scanned else None,
            smtp_resp=text(outcome.replies[i])))
    held = bool(outcome.quarantined and outcome.quarantine)
    in_sql = held and cfg.quarantine_text
    scanned = any(v.spam_scanned for v in task.verdicts.values())
    return MessageRow(
        partition_tag=partition_tag(cfg.partition_tag, cfg.partition_by_week, task.arrived),
        mail_id=task.mail_id, secret_id=outcome.secret_id if held else "",
        am_id=text(task.log_id, 20), time_num=int(task.arrived),
        sender=address(task.envelope.sender), policy=text("/".join(task.policy_banks)),
        client_addr=text(task.client.addr or ""), size=len(task.raw),
        originating=any(b.upper() == "ORIGINATING" for b in task.policy_banks),
        content=content_letter(category),
        quar_type=("Q" if in_sql else "F") if held else " ",
        quar_loc=(task.mail_id if in_sql else text(outcome.quarantine or "")) if held else "",
        dsn_sent=dsn_sent(statuses),
        spam_level=round(sum(scores.get(h.symbol).weight * h.factor for h in task.hits
                             if h.recipient is None), 3) if scanned else None,
        message_id=text(seven_bit(header_text(task.message, "Message-ID"))),
        from_addr=text(header_display(task.message, "From")),
        subject=text(header_display(task.message, "Subject")),
        host=text(hostname), recipients=tuple(rows),
        quarantine_file=os.path.join(quarantine_dir, outcome.quarantine or "")
        if in_sql else None)

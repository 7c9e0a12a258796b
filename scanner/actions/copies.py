"""Copies of the original message for mailboxes of the site: the quarantine mailbox
(``quarantine_to``) and the archive (``archive_to``), as amavis's ``$*_quarantine_to``
and ``archive_quarantine_to`` with an SMTP method.

Each copy is the message as received with ``X-Quarantine-ID``, ``X-Envelope-From`` and
``X-Envelope-To`` in front (a quarantine copy also ``X-Envelope-To-Blocked``: those of
them who did not get the message, when any did not), sent from the null sender (a
copy the mailbox refuses later bounces to no one) through the reinjection next hop, all
targets in one transaction.
"""

from __future__ import annotations

from scanner.actions.headers import fold
from scanner.reinject.deliver import Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.task import Recipient, Task
from scanner.trace import prepend_headers


async def send_copy(task: Task, pool: ConnectionPool, targets: list[str],
                    rcpts: list[str], what: str, blocked: list[str] | None = None) -> None:
    """Deliver one copy naming ``rcpts`` (and the ``blocked`` ones of them, if any) to
    every address of ``targets``; raises RuntimeError unless the next hop took
    it for all of them (the caller defers)."""
    fields = [("X-Quarantine-ID", f"<{task.mail_id}>"),
              ("X-Envelope-From", f"<{task.envelope.sender}>"),
              ("X-Envelope-To", fold("X-Envelope-To", ", ".join(f"<{r}>" for r in rcpts)))]
    if blocked:
        fields.append(("X-Envelope-To-Blocked", fold(
            "X-Envelope-To-Blocked", ", ".join(f"<{r}>" for r in blocked))))
    data = prepend_headers(task.raw, fields)
    params = tuple(p for p in task.envelope.mail_params if p[0].upper() in ("BODY", "SMTPUTF8"))
    result = await deliver(pool, Outgoing("", [Recipient(t) for t in targets], params, data,
                                          task.client), all_or_nothing=True)
    refused = [f"<{t}>: {r}" for t, r in zip(targets, result.replies, strict=True)
               if not r.startswith("2")]
    if refused:
        raise RuntimeError(f"{what} copy not taken: " + "; ".join(refused))

"""Notices to local recipients whose mail was blocked (off by default).

``[policy] notify_recipient = ["banned"]`` (per recipient too): amavis's
``$warnbannedrecip`` / ``$warnvirusrecip`` / ``$warnbadhrecip``. A recipient whose copy
was blocked (discarded, bounced or rejected) for one of the listed categories gets one
short plain-text notice (the ``recipient-CATEGORY`` template, :mod:`scanner.notices`)
from the null sender through the reinjection next hop: who sent
what, why it was stopped and the quarantine id to quote to the administrator. Only
local recipients (``policy.local_domains``) are told, as amavis's ``$warn_offsite``
defaults to; never for spam ("junk with junk"); and only once the blocked copy's fate is
settled (its reply to Postfix is 2xx or 5xx), so a deferred message that Postfix retries
does not notify twice. A failed notice is logged, never deferring the message itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from scanner.actions.notify import KEYS, found_values, new_notice, send_notice
from scanner.notices import NoticeTemplate, Value, built_in
from scanner.pipeline.parse import header_display
from scanner.policy.effective import recipient_is_local
from scanner.reinject.pool import ConnectionPool
from scanner.task import Destiny, Task

log = logging.getLogger("scanner")


def recipients_to_notify(task: Task, replies: Sequence[str]) -> list[str]:
    """The local recipients whose blocked copy calls for a notice (reply settled)."""
    out: list[str] = []
    for rcpt, reply in zip(task.envelope.recipients, replies, strict=False):
        v = task.verdicts.get(rcpt.address)
        if v is None or v.policy is None or v.destiny in (Destiny.PASS, Destiny.TEMPFAIL):
            continue
        if KEYS.get(v.category) not in v.policy.notify_recipient:
            continue
        if reply[:1] in ("2", "5") and recipient_is_local(v.policy, rcpt.address):
            out.append(rcpt.address)
    return out


def build_recipient_notice(task: Task, recipient: str, category: str, hostname: str,
                           quarantine_id: str | None,
                           templates: Mapping[str, NoticeTemplate] | None = None
                           ) -> tuple[bytes, bool]:
    """The notice and whether it needs SMTPUTF8 (a non-ASCII address); ``quarantine_id``
    is the mail_id when this recipient's copy was kept (X-Quarantine-ID, release id).
    Its text is the ``recipient-CATEGORY`` template (``templates``: [notices]
    templates_dir's; None = the shipped ones)."""
    utf8 = not (recipient.isascii() and task.envelope.sender.isascii())
    values: dict[str, Value] = {
        **found_values(task), "hostname": hostname, "category": category,
        "recipient": recipient, "sender": task.envelope.sender, "mail_id": task.mail_id,
        "subject": header_display(task.message, "Subject"),
        "date": header_display(task.message, "Date"),
        "message_id": header_display(task.message, "Message-ID"),
        "quarantine": quarantine_id or ""}
    kind = "recipient-" + KEYS[category].replace("_", "-")
    subject, body = (templates or built_in())[kind].render(values)
    msg = new_notice(recipient, subject, hostname, utf8)
    msg.set_content(body, charset="utf-8")
    return msg.as_bytes(), utf8


async def notify_recipients(task: Task, pool: ConnectionPool, hostname: str,
                            replies: Sequence[str], quarantine: str | None,
                            templates: Mapping[str, NoticeTemplate] | None = None) -> None:
    for address in recipients_to_notify(task, replies):
        verdict = task.verdicts[address]
        held = task.mail_id if quarantine and verdict.quarantine else None
        try:
            data, utf8 = build_recipient_notice(task, address, verdict.category, hostname,
                                                held, templates)
        except Exception:  # an address the email package cannot write: logged, no notice
            log.exception("(%s) notice to recipient <%s> not built", task.log_id, address)
            continue
        await send_notice(pool, address, data, task.log_id, "notice to recipient", utf8)

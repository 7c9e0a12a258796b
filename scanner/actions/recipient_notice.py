"""Notices to local recipients whose mail was blocked (off by default).

``[policy] notify_recipient = ["banned"]`` (per recipient too): amavis's
``$warnbannedrecip`` / ``$warnvirusrecip`` / ``$warnbadhrecip``. A recipient whose copy
was blocked (discarded, bounced or rejected) for one of the listed categories gets one
short plain-text notice from the null sender through the reinjection next hop: who sent
what, why it was stopped and the quarantine id to quote to the administrator. Only
local recipients (``policy.local_domains``) are told, as amavis's ``$warn_offsite``
defaults to; never for spam ("junk with junk"); and only once the blocked copy's fate is
settled (its reply to Postfix is 2xx or 5xx), so a deferred message that Postfix retries
does not notify twice. A failed notice is logged, never deferring the message itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from scanner.actions.notify import KEYS, new_notice, send_notice
from scanner.pipeline.parse import header_display
from scanner.policy.effective import is_local
from scanner.reinject.pool import ConnectionPool
from scanner.task import Destiny, Task, banned_parts, virus_names

log = logging.getLogger("scanner")
_WHY = {"VIRUS": "it contained a virus", "BANNED": "it contained a type of file that is "
        "not accepted here", "BAD-HEADER": "its header section is malformed"}


def recipients_to_notify(task: Task, replies: Sequence[str]) -> list[str]:
    """The local recipients whose blocked copy calls for a notice (reply settled)."""
    out: list[str] = []
    for rcpt, reply in zip(task.envelope.recipients, replies, strict=False):
        v = task.verdicts.get(rcpt.address)
        if v is None or v.policy is None or v.destiny in (Destiny.PASS, Destiny.TEMPFAIL):
            continue
        if KEYS.get(v.category) not in v.policy.notify_recipient:
            continue
        if reply[:1] in ("2", "5") and is_local(v.policy, rcpt.address):
            out.append(rcpt.address)
    return out


def reason_detail(task: Task, category: str) -> str:
    """What was found, in the words of the log line: virus names, banned file names."""
    if category == "VIRUS":
        return "virus: " + (", ".join(virus_names(task.hits)) or "(unnamed)")
    if category == "BANNED":
        files = sorted({_part_name(part) for part in banned_parts(task.hits)})
        return "file: " + (", ".join(f or "(no name)" for f in files) or "(unnamed)")
    found = sorted({h.symbol for h in task.hits if h.symbol.startswith("BAD_HEADER")})
    return "header problem: " + (", ".join(found) or "(unnamed)")


def _part_name(part: str) -> str:
    """``N=invoice.exe`` out of the log line's part description (``P=p004,...,N=...``)."""
    _, sep, name = part.partition(",N=")
    return name if sep else ""


def build_recipient_notice(task: Task, recipient: str, category: str, hostname: str,
                           quarantine_id: str | None) -> tuple[bytes, bool]:
    """The notice and whether it needs SMTPUTF8 (a non-ASCII address); ``quarantine_id``
    is the mail_id when this recipient's copy was kept (X-Quarantine-ID, release id)."""
    utf8 = not (recipient.isascii() and task.envelope.sender.isascii())
    msg = new_notice(recipient, f"A message to you was blocked ({category})", hostname,
                     utf8)
    kept = ([f"Quarantine: {quarantine_id}",
             "            (ask your mail administrator to release it, quoting this id)"]
            if quarantine_id else ["Quarantine: (not kept)"])
    about = [f"{label:<12}{value}" for label, value in (
        ("Subject:", header_display(task.message, "Subject")),
        ("Date:", header_display(task.message, "Date")),
        ("Message-ID:", header_display(task.message, "Message-ID"))) if value]
    msg.set_content("\n".join([
        "A message addressed to you was not delivered:",
        f"{_WHY[category]}.",
        "",
        f"Sender:     <{task.envelope.sender}>",
        "            (the envelope sender; it may be forged)",
        *about,
        f"Found:      {reason_detail(task, category)}",
        *kept,
        "",
        "If you expected this message, ask the sender to share the file another",
        "way, or contact your mail administrator.",
        "",
    ]), charset="utf-8")
    return msg.as_bytes(), utf8


async def notify_recipients(task: Task, pool: ConnectionPool, hostname: str,
                            replies: Sequence[str], quarantine: str | None) -> None:
    for address in recipients_to_notify(task, replies):
        verdict = task.verdicts[address]
        held = task.mail_id if quarantine and verdict.quarantine else None
        try:
            data, utf8 = build_recipient_notice(task, address, verdict.category, hostname,
                                                held)
        except Exception:  # an address the email package cannot write: logged, no notice
            log.exception("(%s) notice to recipient <%s> not built", task.log_id, address)
            continue
        await send_notice(pool, address, data, task.log_id, "notice to recipient", utf8)

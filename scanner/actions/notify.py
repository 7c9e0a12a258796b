"""Optional admin notifications per category of mail (off by default).

``[policy] notify_admin = { virus = "postmaster@example.com" }``: one short
plain-text message per notified category, sent through the reinjection next hop from
the null sender. A failure is logged, never deferring the message itself.
"""

from __future__ import annotations

import asyncio
import logging
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import formatdate, make_msgid

from scanner.pipeline.parse import header_display
from scanner.policy.decide import beyond_spam_cutoff
from scanner.reinject.deliver import Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.task import ClientInfo, Destiny, Recipient, Task

log = logging.getLogger("scanner")
KEYS = {"VIRUS": "virus", "BANNED": "banned", "UNCHECKED": "unchecked", "SPAM": "spam",
        "BAD-HEADER": "bad_header"}


def _targets(task: Task) -> dict[str, tuple[str, bool]]:
    """Admin address -> (category, whether any recipient's copy of it was blocked)."""
    out: dict[str, tuple[str, bool]] = {}
    for v in task.verdicts.values():
        key = KEYS.get(v.category)
        admin = (v.policy.notify_admin or {}).get(key) if key and v.policy else None
        if not admin or (key == "spam" and beyond_spam_cutoff(
                v, v.policy.spam_notify_admin_cutoff_level)):
            continue
        category, blocked = out.get(admin, (v.category, False))
        if category == v.category:
            out[admin] = (category, blocked or v.destiny is not Destiny.PASS)
    return out


def new_notice(to: str, subject: str, hostname: str, utf8: bool) -> EmailMessage:
    """A notice's header section from our postmaster to ``to``, marked auto-generated
    (RFC 3834); ``utf8``: written for SMTPUTF8 (a non-ASCII address)."""
    msg = EmailMessage(policy=SMTPUTF8 if utf8 else SMTP)
    msg["From"] = f"Content filter <postmaster@{hostname}>"
    msg["To"] = f"<{to}>"
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=hostname)
    msg["Auto-Submitted"] = "auto-generated"
    return msg


def build_notice(task: Task, admin: str, category: str, hostname: str,
                 quarantine: str | None, blocked: bool = True) -> bytes:
    """The notice as a MIME message (a header field that is not ASCII encoded, the
    body UTF-8 text with a fitting transfer encoding, one recipient a line)."""
    symbols = sorted({f"{h.symbol}({','.join(h.options)})" if h.options else h.symbol
                      for v in task.verdicts.values() for h in v.hits})
    msg = new_notice(admin, f"{category} from <{task.envelope.sender}>", hostname,
                     not admin.isascii())
    rcpts = [f"<{r.address}>" for r in task.envelope.recipients] or [""]
    msg.set_content("\n".join([
        f"A message was {'blocked' if blocked else 'delivered'} as {category}.",
        "",
        f"mail_id:    {task.mail_id}",
        f"Queue-ID:   {task.queue_id or '-'}",
        f"Sender:     <{task.envelope.sender}>",
        f"Recipients: {rcpts[0]}",
        *(f"            {r}" for r in rcpts[1:]),
        f"Client:     [{task.client.addr or ''}] {task.client.name or ''}",
        f"Subject:    {header_display(task.message, 'Subject')}",
        f"Message-ID: {header_display(task.message, 'Message-ID')}",
        f"Symbols:    {' '.join(symbols)}",
        f"Quarantine: {quarantine or '(not quarantined)'}",
        "",
    ]), charset="utf-8")
    return msg.as_bytes()


NOTICE_TIMEOUT = 30.0  # seconds for one notice: it must not hold Postfix's reply long


async def send_notice(pool: ConnectionPool, address: str, data: bytes, log_id: str,
                      what: str, smtputf8: bool = False) -> None:
    """Send one notice from the null sender (BODY=8BITMIME for 8-bit content, SMTPUTF8
    when asked or for a non-ASCII address); any failure is logged, never raised (the
    message itself has been dealt with: an exception now would defer, and so repeat, it)."""
    params = ((("BODY", "8BITMIME"),) if not data.isascii() else ()) + (
        (("SMTPUTF8", None),) if smtputf8 or not address.isascii() else ())
    try:
        async with asyncio.timeout(NOTICE_TIMEOUT):
            result = await deliver(pool, Outgoing("", [Recipient(address)], params, data,
                                                  ClientInfo()), all_or_nothing=True)
        reply = result.replies[0]
    except TimeoutError:
        reply = f"no answer within {NOTICE_TIMEOUT:g} s"
    except Exception as exc:
        reply = f"{type(exc).__name__}: {exc}"
    if not reply.startswith("2"):
        log.warning("(%s) %s to <%s> failed: %s", log_id, what, address, reply)


async def notify_admins(task: Task, pool: ConnectionPool, hostname: str,
                        quarantine: str | None) -> None:
    for admin, (category, blocked) in _targets(task).items():
        try:
            notice = build_notice(task, admin, category, hostname, quarantine, blocked)
        except Exception:  # never raised: the message has been dealt with (see send_notice)
            log.exception("(%s) admin notification to <%s> not built", task.log_id, admin)
            continue
        await send_notice(pool, admin, notice, task.log_id, "admin notification",
                          needs_smtputf8(task, admin))


def needs_smtputf8(task: Task, address: str) -> bool:
    """A notice to ``address`` about ``task`` names a UTF-8 address (its recipient, or
    in its header and text the sender and recipients of the message): it goes out
    with SMTPUTF8, as amavis sends such notifications (RFC 6531)."""
    return not all(a.isascii() for a in (address, task.envelope.sender,
                                         *(r.address for r in task.envelope.recipients)))

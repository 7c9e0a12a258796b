"""Optional admin notifications per category of mail (off by default).

``[policy] notify_admin = { virus = "postmaster@example.com" }``: one short
plain-text message per notified category (its text from the ``admin-CATEGORY``
template, :mod:`scanner.notices`), sent through the reinjection next hop from
the null sender. A failure is logged, never deferring the message itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import formatdate, make_msgid

from scanner.notices import NoticeTemplate, Value, built_in
from scanner.pipeline.parse import header_display
from scanner.policy.decide import beyond_spam_cutoff
from scanner.reinject.deliver import Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.task import ClientInfo, Destiny, Recipient, Task, banned_parts, virus_names

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
                 quarantine: str | None, blocked: bool = True,
                 templates: Mapping[str, NoticeTemplate] | None = None) -> bytes:
    """The notice as a MIME message (a header field that is not ASCII encoded, the
    body UTF-8 text with a fitting transfer encoding, one recipient a line), written
    from the ``admin-CATEGORY`` template (``templates``: [notices] templates_dir's;
    None = the shipped ones)."""
    symbols = sorted({f"{h.symbol}({','.join(h.options)})" if h.options else h.symbol
                      for v in task.verdicts.values() for h in v.hits})
    values: dict[str, Value] = {
        **found_values(task), "hostname": hostname, "category": category,
        "blocked": "yes" if blocked else "", "mail_id": task.mail_id,
        "queue_id": task.queue_id or "-", "sender": task.envelope.sender,
        "recipients": tuple(f"<{r.address}>" for r in task.envelope.recipients) or ("",),
        "client_addr": task.client.addr or "", "client_name": task.client.name or "",
        "subject": header_display(task.message, "Subject"),
        "date": header_display(task.message, "Date"),
        "message_id": header_display(task.message, "Message-ID"),
        "symbols": " ".join(symbols), "quarantine": quarantine or "",
        "score": _score(task)}
    kind = "admin-" + KEYS.get(category, "unchecked").replace("_", "-")
    subject, body = (templates or built_in())[kind].render(values)
    msg = new_notice(admin, subject, hostname, not admin.isascii())
    msg.set_content(body, charset="utf-8")
    return msg.as_bytes()


def _score(task: Task) -> str:
    """The highest spam score among the recipients' verdicts (as the log line's Hits)."""
    scores = [v.score for v in task.verdicts.values()]
    return f"{max(scores):.3f}" if scores else ""


def found_values(task: Task) -> dict[str, Value]:
    """What was found, in the words of the log line: ``virus_names``, ``banned_files``
    (the names of banned parts), ``banned_parts`` (their descriptions, one a line) and
    ``header_problems`` (BAD_HEADER symbols)."""
    parts = banned_parts(task.hits)
    files = sorted({_part_name(part) for part in parts})
    problems = sorted({h.symbol for h in task.hits if h.symbol.startswith("BAD_HEADER")})
    return {"virus_names": ", ".join(virus_names(task.hits)) or "(unnamed)",
            "banned_files": ", ".join(f or "(no name)" for f in files) or "(unnamed)",
            "banned_parts": tuple(parts) or ("(unnamed)",),
            "header_problems": ", ".join(problems) or "(unnamed)"}


def _part_name(part: str) -> str:
    """``N=invoice.exe`` out of the log line's part description (``P=p004,...,N=...``)."""
    _, sep, name = part.partition(",N=")
    return name if sep else ""


NOTICE_TIMEOUT = 30.0  # seconds for one notice: it must not hold Postfix's reply long


async def send_notice(pool: ConnectionPool, address: str, data: bytes, log_id: str,
                      what: str, smtputf8: bool = False) -> None:
    """Send one notice from the null sender; any failure is logged, never raised (the
    message itself has been dealt with: an exception now would defer, and so repeat, it)."""
    reply = await notice_reply(pool, address, data, smtputf8)
    if not reply.startswith("2"):
        log.warning("(%s) %s to <%s> failed: %s", log_id, what, address, reply)


async def notice_reply(pool: ConnectionPool, address: str, data: bytes,
                       smtputf8: bool = False) -> str:
    """Send one notice from the null sender (BODY=8BITMIME for 8-bit content, SMTPUTF8
    when asked or for a non-ASCII address) within :data:`NOTICE_TIMEOUT`; the next
    hop's reply, or why there is none (never raises but for cancellation)."""
    params = ((("BODY", "8BITMIME"),) if not data.isascii() else ()) + (
        (("SMTPUTF8", None),) if smtputf8 or not address.isascii() else ())
    try:
        async with asyncio.timeout(NOTICE_TIMEOUT):
            result = await deliver(pool, Outgoing("", [Recipient(address)], params, data,
                                                  ClientInfo()), all_or_nothing=True)
        return result.replies[0]
    except TimeoutError:
        return f"no answer within {NOTICE_TIMEOUT:g} s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


async def notify_admins(task: Task, pool: ConnectionPool, hostname: str,
                        quarantine: str | None,
                        templates: Mapping[str, NoticeTemplate] | None = None) -> None:
    for admin, (category, blocked) in _targets(task).items():
        try:
            notice = build_notice(task, admin, category, hostname, quarantine, blocked,
                                  templates)
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

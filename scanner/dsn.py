"""RFC 3464 delivery status notifications, for recipients Postfix cannot be told about.

Over SMTP one reply covers every recipient. When the next hop (or policy) refuses
some recipients permanently and accepts others, we answer 250 and report the refused
ones to the envelope sender ourselves, as amavis does. Never to the null sender, and
never for a recipient whose NOTIFY excludes FAILURE. As amavis's, the DSN returns only
the header section of the message (``text/rfc822-headers``), whatever RET asks for
(RFC 3461 6.2 allows it): the body of mail refused for its content (a virus, a banned
file, spam) must not go back out with the bounce.

Mail with UTF-8 in its envelope or header section (SMTPUTF8 mail) gets RFC 6533's
forms, as Postfix's bounces: ``message/global-delivery-status``, ``utf-8`` as the
address type of a non-ASCII address, ``message/global-headers``; and the DSN goes
out with SMTPUTF8 (:func:`needs_smtputf8`): without it, a DSN to a UTF-8 sender was
an internationalised message sent without the extension.
"""

from __future__ import annotations

import re
from email.utils import formatdate, make_msgid

from scanner.headerfields import section_end
from scanner.reinject.client import crlf_lines
from scanner.smtp import xtext
from scanner.task import Recipient, Task

_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
HEADERS_LIMIT = 256 * 1024


def wants_failure_dsn(task: Task, rcpt: Recipient) -> bool:
    """False for the null sender and for NOTIFY=NEVER / NOTIFY without FAILURE."""
    if not task.envelope.sender:
        return False
    notify = dict(rcpt.params).get("NOTIFY")
    return notify is None or "FAILURE" in notify.upper().split(",")


def needs_smtputf8(task: Task, failed: list[tuple[Recipient, str]]) -> bool:
    """The DSN for ``failed`` is internationalised: the message was SMTPUTF8 mail, or
    the sender or a failed recipient is not ASCII (RFC 6533)."""
    return (task.envelope.smtputf8 or not task.envelope.sender.isascii()
            or not all(r.address.isascii() for r, _ in failed))


def _address_type(address: str) -> str:
    """RFC 6533 3: ``utf-8`` for a non-ASCII address, else ``rfc822``."""
    return "rfc822" if address.isascii() else "utf-8"


def build_failure_dsn(task: Task, failed: list[tuple[Recipient, str]], reporting_mta: str) -> bytes:
    """A multipart/report DSN (bytes, CRLF) listing each failed recipient and its reply."""
    boundary = f"----=_scanner_dsn_{task.mail_id}"
    utf8 = needs_smtputf8(task, failed)
    status_type = "message/global-delivery-status" if utf8 else "message/delivery-status"
    headers_type = "message/global-headers" if utf8 else "text/rfc822-headers"
    params = dict(task.envelope.mail_params)
    lines = [
        f"From: MAILER-DAEMON@{reporting_mta} (Mail Delivery System)",
        f"To: <{task.envelope.sender}>",
        "Subject: Undelivered mail returned to sender",
        f"Date: {formatdate(localtime=True)}",
        f"Message-ID: {make_msgid(domain=reporting_mta)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"This is the mail system at host {reporting_mta}.",
        "",
        "Your message could not be delivered to one or more recipients:",
        "",
    ]
    lines += [f"<{r.address}>: {reply}" for r, reply in failed]
    lines += ["", f"--{boundary}", f"Content-Type: {status_type}", ""]
    lines += [f"Reporting-MTA: dns; {reporting_mta}"]
    if params.get("ENVID"):
        lines.append(f"Original-Envelope-Id: {xtext.decode(params['ENVID'])}")
    lines.append(f"X-Scanner-Mail-Id: {task.mail_id}")
    for rcpt, reply in failed:
        lines.append("")
        orcpt = dict(rcpt.params).get("ORCPT")
        if orcpt:
            kind, _, addr = orcpt.partition(";")
            lines.append(f"Original-Recipient: {kind}; {xtext.decode(addr)}")
        status = _STATUS.search(reply)
        lines += [
            f"Final-Recipient: {_address_type(rcpt.address)}; {rcpt.address}",
            "Action: failed",
            f"Status: {status.group(1) if status else '5.0.0'}",
            f"Diagnostic-Code: smtp; {reply}",
        ]
    returned = _header_section(task.raw)
    head = "\r\n".join(lines + ["", f"--{boundary}", f"Content-Type: {headers_type}",
                                 "", ""])
    tail = f"\r\n--{boundary}--\r\n"
    return head.encode("utf-8", "surrogateescape") + returned + tail.encode("ascii")


def _header_section(raw: bytes) -> bytes:
    """The header section (at most HEADERS_LIMIT bytes, whole lines), CRLF line ends."""
    head = raw[:min(section_end(raw), HEADERS_LIMIT)]
    if len(head) == HEADERS_LIMIT and b"\n" in head:
        head = head[:head.rfind(b"\n") + 1]
    return crlf_lines(head) if head else head

"""RFC 3464 delivery status notifications, for recipients Postfix cannot be told about.

Over SMTP one reply covers every recipient. When the next hop (or policy) refuses
some recipients permanently and accepts others, we answer 250 and report the refused
ones to the envelope sender ourselves, as amavis does. Never to the null sender, and
never for a recipient whose NOTIFY excludes FAILURE. As amavis's, the DSN returns only
the header section of the message (``text/rfc822-headers``), whatever RET asks for
(RFC 3461 6.2 allows it): the body of mail refused for its content (a virus, a banned
file, spam) must not go back out with the bounce.
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


def build_failure_dsn(task: Task, failed: list[tuple[Recipient, str]], reporting_mta: str) -> bytes:
    """A multipart/report DSN (bytes, CRLF) listing each failed recipient and its reply."""
    boundary = f"----=_scanner_dsn_{task.mail_id}"
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
    lines += ["", f"--{boundary}", "Content-Type: message/delivery-status", ""]
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
            f"Final-Recipient: rfc822; {rcpt.address}",
            "Action: failed",
            f"Status: {status.group(1) if status else '5.0.0'}",
            f"Diagnostic-Code: smtp; {reply}",
        ]
    returned = _header_section(task.raw)
    head = "\r\n".join(lines + ["", f"--{boundary}", "Content-Type: text/rfc822-headers",
                                 "", ""])
    tail = f"\r\n--{boundary}--\r\n"
    return head.encode("utf-8", "surrogateescape") + returned + tail.encode("ascii")


def _header_section(raw: bytes) -> bytes:
    """The header section (at most HEADERS_LIMIT bytes, whole lines), CRLF line ends."""
    head = raw[:min(section_end(raw), HEADERS_LIMIT)]
    if len(head) == HEADERS_LIMIT and b"\n" in head:
        head = head[:head.rfind(b"\n") + 1]
    return crlf_lines(head) if head else head

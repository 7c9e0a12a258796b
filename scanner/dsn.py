"""RFC 3464 delivery status notifications, for recipients Postfix cannot be told about.

Over SMTP one reply covers every recipient. When the next hop (or policy) refuses
some recipients permanently and accepts others, we answer 250 and report the refused
ones to the envelope sender ourselves, as amavis does. Never to the null sender, and
never for a recipient whose NOTIFY excludes FAILURE. As amavis's, the DSN returns only
the header section of the message (``text/rfc822-headers``), whatever RET asks for
(RFC 3461 6.2 allows it): the body of mail refused for its content (a virus, a banned
file, spam) must not go back out with the bounce.

For an SMTPUTF8 message, or one with a non-ASCII address, the report is RFC 6533's
``message/global-delivery-status`` (``utf-8`` address types) and goes out with SMTPUTF8,
as Postfix's own bounces: without it the next hop refuses a UTF-8 sender address. A
header section in UTF-8 comes back as ``message/global-headers`` (amavis), any 8-bit
part is declared ``8bit`` and the DSN is sent with BODY=8BITMIME. The Subject and the
human-readable text come from the ``dsn`` template (:mod:`scanner.notices`).
"""

from __future__ import annotations

import quopri
import re
from collections.abc import Mapping
from email.header import Header
from email.utils import formatdate, make_msgid

from scanner.actions.headers import fold
from scanner.headerfields import section_end
from scanner.notices import NoticeTemplate, Value, built_in, clean
from scanner.pipeline.parse import header_display
from scanner.reinject.client import crlf_lines
from scanner.smtp import xtext
from scanner.task import Recipient, Task

_REPLY = re.compile(r"^([245])\d\d[ -]\s*(?:([245])\.(\d{1,3}\.\d{1,3})\b)?")
HEADERS_LIMIT = 256 * 1024


def wants_failure_dsn(task: Task, rcpt: Recipient) -> bool:
    """False for the null sender and for NOTIFY=NEVER / NOTIFY without FAILURE."""
    if not task.envelope.sender:
        return False
    notify = dict(rcpt.params).get("NOTIFY")
    return notify is None or "FAILURE" in notify.upper().split(",")


def status_of(reply: str) -> str:
    """The Status field for a refusal: the reply's enhanced code when it leads the text
    and agrees with the reply's class (RFC 3463), else ``X.0.0`` of that class."""
    m = _REPLY.match(reply)
    if m is None:
        return "5.0.0"
    if m.group(2) == m.group(1):
        return f"{m.group(2)}.{m.group(3)}"
    return f"{m.group(1)}.0.0"


def is_global(task: Task, failed: list[tuple[Recipient, str]]) -> bool:
    """Whether the report must be RFC 6533's global (UTF-8) kind: SMTPUTF8 mail or a
    non-ASCII address."""
    return task.envelope.smtputf8 or not all(
        a.isascii() for a in [task.envelope.sender, *(r.address for r, _ in failed)])


def mail_params(task: Task, dsn: bytes) -> tuple[tuple[str, str | None], ...]:
    """MAIL FROM parameters the DSN needs: SMTPUTF8 when the original used it or the
    sender's address is not ASCII, BODY=8BITMIME for 8-bit content."""
    params: list[tuple[str, str | None]] = []
    if not dsn.isascii():
        params.append(("BODY", "8BITMIME"))
    if task.envelope.smtputf8 or not task.envelope.sender.isascii():
        params.append(("SMTPUTF8", None))
    return tuple(params)


def build_failure_dsn(task: Task, failed: list[tuple[Recipient, str]], reporting_mta: str,
                      templates: Mapping[str, NoticeTemplate] | None = None) -> bytes:
    """A multipart/report DSN (bytes, CRLF) listing each failed recipient and its reply;
    the Subject and the text/plain part from the ``dsn`` template (``templates``:
    [notices] templates_dir's; None = the shipped ones)."""
    boundary = f"----=_scanner_dsn_{task.mail_id}"
    utf8 = is_global(task, failed)
    kind = "global-delivery-status" if utf8 else "delivery-status"
    subject, text = _human_part(task, failed, reporting_mta, templates or built_in())
    status = _status_fields(task, failed, reporting_mta, utf8)
    returned = _header_section(task.raw)
    returned_type = ("message/global-headers" if not returned.isascii() and _is_utf8(returned)
                     else "text/rfc822-headers")
    text_8bit = not text.isascii()
    text_cte, text_lines = _text_body(text)
    any_8bit = utf8 or (text_8bit and not text_cte) or not returned.isascii()
    lines = [
        f"From: MAILER-DAEMON@{reporting_mta} (Mail Delivery System)",
        f"To: <{task.envelope.sender}>",
        f"Subject: {subject}",
        f"Date: {formatdate(localtime=True)}",
        f"Message-ID: {make_msgid(domain=reporting_mta)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f"Content-Type: multipart/report; report-type={kind};",
        f'\tboundary="{boundary}"',
        *_cte(any_8bit),
        "",
        f"--{boundary}",
        f"Content-Type: text/plain; charset={'utf-8' if text_8bit else 'us-ascii'}",
        *(text_cte or _cte(text_8bit)),
        "",
        *text_lines,
        f"--{boundary}",
        f"Content-Type: message/{kind}",
        *_cte(not all(line.isascii() for line in status)),
        "",
        *status,
        "",
        f"--{boundary}",
        f"Content-Type: {returned_type}",
        *_cte(not returned.isascii()),
        "",
        "",
    ]
    tail = f"\r\n--{boundary}--\r\n"
    return ("\r\n".join(lines).encode("utf-8", "surrogateescape") + returned
            + tail.encode("ascii"))


def _human_part(task: Task, failed: list[tuple[Recipient, str]], reporting_mta: str,
                templates: Mapping[str, NoticeTemplate]) -> tuple[str, str]:
    """The Subject (RFC 2047 encoded if not ASCII) and the text/plain part (``\n``
    line ends): each failed recipient and its reply a line, folded."""
    lines: list[str] = []
    for rcpt, reply in failed:
        lines += fold("X", clean(f"<{rcpt.address}>: {reply}")).split("\r\n")
    values: dict[str, Value] = {
        "hostname": reporting_mta, "sender": task.envelope.sender, "failed": tuple(lines),
        "mail_id": task.mail_id, "subject": header_display(task.message, "Subject"),
        "date": header_display(task.message, "Date"),
        "message_id": header_display(task.message, "Message-ID")}
    subject, text = templates["dsn"].render(values)
    if not subject.isascii():
        return Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n"), text
    return fold("Subject", subject), text


def _status_fields(task: Task, failed: list[tuple[Recipient, str]], reporting_mta: str,
                   utf8: bool) -> list[str]:
    """The lines of the message/(global-)delivery-status part."""
    params = dict(task.envelope.mail_params)
    lines = [f"Reporting-MTA: dns; {reporting_mta}"]
    if params.get("ENVID"):
        lines.append(f"Original-Envelope-Id: {_envid(params['ENVID'])}")
    lines.append(f"Arrival-Date: {formatdate(task.arrived, localtime=True)}")
    lines.append(f"X-Scanner-Mail-Id: {task.mail_id}")
    for rcpt, reply in failed:
        lines.append("")
        orcpt = dict(rcpt.params).get("ORCPT")
        if orcpt:
            lines.append("Original-Recipient: {}; {}".format(*_original_recipient(orcpt, utf8)))
        addr_type = "rfc822" if rcpt.address.isascii() else "utf-8"
        lines += [
            f"Final-Recipient: {addr_type}; {rcpt.address}",
            "Action: failed",
            f"Status: {status_of(reply)}",
            "Diagnostic-Code: " + fold("Diagnostic-Code", f"smtp; {reply}"),
        ]
    return lines


def _original_recipient(orcpt: str, utf8: bool) -> tuple[str, str]:
    """ORCPT's address type and address, decoded from xtext. A global report gets a
    non-ASCII one as a ``utf-8`` address (RFC 6533: upconverted, ``\\x{HEX}`` too);
    a delivery-status part, which is ASCII, keeps the xtext."""
    kind, _, addr = orcpt.partition(";")
    value = xtext.decode(addr)
    if utf8 and kind.strip().lower() == "utf-8":
        value = xtext.decode_utf8_addr(value)
    if value.isascii():
        return kind, value
    return ("utf-8", value) if utf8 else (kind, addr)


def _envid(value: str) -> str:
    """ENVID decoded from xtext; as sent if that is not printable US-ASCII (RFC 3461
    4.4), as amavis sanitizes it."""
    decoded = xtext.decode(value)
    return decoded if decoded.isascii() and decoded.isprintable() else value


def _text_body(text: str) -> tuple[list[str], list[str]]:
    """The text part's Content-Transfer-Encoding field (none: 7bit or 8bit as it is)
    and lines: quoted-printable when a line would pass 998 octets (RFC 5322 2.1.1; a
    long value such as $subject in a site's template)."""
    lines = text.split("\n")
    if all(len(line.encode("utf-8", "surrogateescape")) <= 998 for line in lines):
        return [], lines
    encoded = quopri.encodestring(text.encode("utf-8", "surrogateescape")).decode("ascii")
    return ["Content-Transfer-Encoding: quoted-printable"], encoded.split("\n")


def _cte(eight_bit: bool) -> list[str]:
    return ["Content-Transfer-Encoding: 8bit"] if eight_bit else []


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _header_section(raw: bytes) -> bytes:
    """The header section (at most HEADERS_LIMIT bytes, whole lines), CRLF line ends."""
    head = raw[:min(section_end(raw), HEADERS_LIMIT)]
    if len(head) == HEADERS_LIMIT and b"\n" in head:
        head = head[:head.rfind(b"\n") + 1]
    return crlf_lines(head) if head else head

"""Headers we add to passed mail: the amavis-style trace ``Received:`` header."""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from functools import lru_cache

from scanner import PRODUCT
from scanner.headerfields import line_end
from scanner.task import Task


def received_header(task: Task, hostname: str, port: int, protocol: str,
                    recipients: list[str]) -> tuple[str, str]:
    """``Received: from HELO ([peer]) by HOST (scanner, port N) with ESMTP id MAILID ...``;
    ``port`` 0: a Unix socket listener (``from HELO by HOST (scanner, unix socket)``, as
    amavis writes it: no peer address)."""
    helo = task.helo or "localhost"
    if port:
        peer = task.peer[0] if task.peer else "127.0.0.1"
        if ":" in peer:  # RFC 5321 4.1.3 address literal, as amavis writes it: [IPv6:::1]
            peer = "IPv6:" + peer
        origin, where = f"{helo} ([{peer}])", f"port {port}"
    else:
        origin, where = helo, "unix socket"
    value = (f"from {origin}\r\n\tby {hostname} ({PRODUCT}, {where})"
             f" with {with_protocol(protocol, task.envelope.smtputf8)} id {task.mail_id}")
    if len(recipients) == 1:
        value += f"\r\n\tfor <{recipients[0]}>"
    value += f"; {_date(int(time.time()))}"
    return "Received", value


def with_protocol(protocol: str, smtputf8: bool) -> str:
    """The ``with`` protocol of the trace header: for SMTPUTF8 mail RFC 6531's
    ``UTF8SMTP`` (for ESMTP) or ``UTF8LMTP``, as amavis writes them."""
    if not smtputf8:
        return protocol
    return "UTF8SMTP" if protocol == "ESMTP" else "UTF8" + protocol


@lru_cache(maxsize=2)  # formatting the date costs more than the rest of the header
def _date(second: int) -> str:
    return formatdate(second, localtime=True)


def prepend_headers(raw: bytes, headers: list[tuple[str, str]]) -> bytes:
    """New header lines (already folded) in front of the message, their lines ending as
    the message's do (:func:`scanner.headerfields.line_end`): a bare-LF message gets
    no CRLF mixed into its header section."""
    if not headers:
        return raw
    block = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return _LINE_END.sub(line_end(raw), block.encode("utf-8", "surrogateescape")) + raw


_LINE_END = re.compile(rb"\r?\n")

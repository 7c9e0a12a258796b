"""Headers we add to passed mail: the amavis-style trace ``Received:`` header."""

from __future__ import annotations

import time
from email.utils import formatdate
from functools import lru_cache

from scanner import PRODUCT
from scanner.task import Task


def received_header(task: Task, hostname: str, port: int, protocol: str,
                    recipients: list[str]) -> tuple[str, str]:
    """``Received: from HELO ([peer]) by HOST (scanner, port N) with ESMTP id MAILID ...``."""
    peer = task.peer[0] if task.peer else "127.0.0.1"
    if ":" in peer:  # RFC 5321 4.1.3 address literal, as amavis writes it: [IPv6:::1]
        peer = "IPv6:" + peer
    helo = task.helo or "localhost"
    value = (f"from {helo} ([{peer}])\r\n\tby {hostname} ({PRODUCT}, port {port})"
             f" with {protocol} id {task.mail_id}")
    if len(recipients) == 1:
        value += f"\r\n\tfor <{recipients[0]}>"
    value += f"; {_date(int(time.time()))}"
    return "Received", value


@lru_cache(maxsize=2)  # formatting the date costs more than the rest of the header
def _date(second: int) -> str:
    return formatdate(second, localtime=True)


def prepend_headers(raw: bytes, headers: list[tuple[str, str]]) -> bytes:
    """New header lines (CRLF-terminated, already folded) in front of the message."""
    if not headers:
        return raw
    block = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return block.encode("utf-8", "surrogateescape") + raw

"""XFORWARD towards the next hop: the commands that carry the original client's
attributes (XFORWARD_README), in forms Postfix's smtpd accepts, and what a refusal
means for the transaction."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from scanner.errors import NextHopError
from scanner.reinject.client import Reply, SMTPClient
from scanner.smtp import xtext
from scanner.task import ClientInfo
from scanner.throttle import held_note

if TYPE_CHECKING:
    from scanner.reinject.deliver import NextHop

XFORWARD_LINE_MAX = 500
# What Postfix's smtpd takes as XFORWARD NAME (its valid_hostname()); anything else is
# refused with 501, so it is sent as [UNAVAILABLE] instead.
_HOSTNAME = re.compile(r"[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*\.?")
_XFORWARD_PROTO_MAX = 64

log = logging.getLogger("scanner")


def xforward_lines(client: SMTPClient, enabled: bool, info: ClientInfo) -> list[str]:
    """The XFORWARD commands to send (none if off or not offered), each under 500 bytes."""
    if not enabled or not client.supports("XFORWARD"):
        return []
    offered = set(client.extensions["XFORWARD"].upper().split())
    lines: list[str] = []
    line = "XFORWARD"
    for key, value in info.as_xforward().items():
        if key not in offered:
            continue
        value = _acceptable(key, value)
        item = f" {key}={xtext.encode(value) if value != '[UNAVAILABLE]' else value}"
        if len(line) + len(item) > XFORWARD_LINE_MAX:
            lines.append(line)
            line = "XFORWARD"
        line += item
    if line != "XFORWARD":
        lines.append(line)
    return lines


def _acceptable(key: str, value: str) -> str:
    """``value``, or ``[UNAVAILABLE]`` where Postfix's smtpd would refuse it."""
    if value == "[UNAVAILABLE]":
        return value
    if key == "NAME" and (len(value) > 255 or not _HOSTNAME.fullmatch(value)):
        return "[UNAVAILABLE]"
    if key == "PROTO" and len(value) > _XFORWARD_PROTO_MAX:
        return "[UNAVAILABLE]"
    return value


def check_xforward(hop: NextHop, replies: list[Reply]) -> None:
    """A refused XFORWARD is logged and the transaction goes on, as Postfix's own
    smtp client does: the next hop merely loses the original client's attributes,
    while a temporary failure would defer the message on every retry. Only 421
    (the next hop is closing the connection) stops it."""
    for reply in replies:
        if reply.code == 421:
            raise NextHopError(f"next hop closing: {reply.text}")
        if reply.code != 250 and (held := hop.warnings.due("xforward")) is not None:
            log.warning("next hop %s refused XFORWARD, delivering without it: %s%s",
                        hop.label, reply.text, held_note(held, "more refusals"))

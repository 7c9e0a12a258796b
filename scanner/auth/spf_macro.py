"""SPF macro expansion (RFC 7208 section 7.3 and 7.4).

Expansion is async because ``%{p}`` needs DNS (the validated reverse name of the client);
that lookup runs only when a record actually uses ``%{p}``.
"""

from __future__ import annotations

import ipaddress
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from scanner.auth.spf_record import Macro, MacroString

MAX_NAME = 253


@dataclass(frozen=True, slots=True)
class MacroContext:
    """The values macros expand to, for one check_host() call."""

    sender: str  # full address, postmaster@HELO for the null sender
    domain: str  # the current <domain>
    ip: str
    helo: str
    receiver: str = "unknown"

    @property
    def local_part(self) -> str:
        return self.sender.rpartition("@")[0] or "postmaster"

    @property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2]


PResolver = Callable[[], Awaitable[str]]


async def expand(spec: MacroString, ctx: MacroContext, p_value: PResolver,
                 domain_spec: bool = True) -> str:
    """Expand a macro-string; a domain-spec result longer than 253 characters loses
    labels on the left until it fits (section 7.3)."""
    parts: list[str] = []
    for item in spec:
        if isinstance(item, str):
            parts.append(item)
            continue
        value = await _value(item.letter, ctx, p_value)
        parts.append(_transform(value, item))
    result = "".join(parts)
    if domain_spec:
        result = result.rstrip(".")
        while len(result) > MAX_NAME and "." in result:
            result = result.split(".", 1)[1]
    return result


async def _value(letter: str, ctx: MacroContext, p_value: PResolver) -> str:
    if letter == "s":
        return ctx.sender
    if letter == "l":
        return ctx.local_part
    if letter == "o":
        return ctx.sender_domain
    if letter == "d":
        return ctx.domain
    if letter == "i":
        return dotted_ip(ctx.ip)
    if letter == "p":
        return await p_value()
    if letter == "v":
        return "in-addr" if ipaddress.ip_address(ctx.ip).version == 4 else "ip6"
    if letter == "h":
        return ctx.helo
    if letter == "c":
        return ctx.ip
    if letter == "r":
        return ctx.receiver
    if letter == "t":
        return str(int(time.time()))
    raise ValueError(f"unknown macro letter {letter!r}")


def dotted_ip(ip: str) -> str:
    """``%{i}``: dotted IPv4, or the 32 nibbles of an IPv6 address separated by dots."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        return str(addr)
    return ".".join(addr.exploded.replace(":", ""))


def _transform(value: str, macro: Macro) -> str:
    pieces = [value]
    for delim in macro.delimiters:
        pieces = [p for chunk in pieces for p in chunk.split(delim)]
    if macro.reverse:
        pieces.reverse()
    if macro.digits is not None:
        pieces = pieces[-macro.digits:]
    out = ".".join(pieces)
    if macro.escape:
        out = urllib.parse.quote(out, safe="-._~")
    return out

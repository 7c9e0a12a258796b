"""Sort a blacklist's A answers into listed, blocked and bogus.

Public lists refuse queries from big public resolvers (and from anyone over a quota) by
answering with a special code instead of NXDOMAIN: Spamhaus 127.255.255.252/254/255,
URIBL and SURBL 127.0.0.1, Spamhaus DBL 127.0.1.255 for IP queries. Such an answer
means "we did not look", never "listed". Answers outside 127.0.0.0/8 are bogus (a
resolver that rewrites NXDOMAIN to an advertising page) and count as blocked too.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scanner.throttle import LogThrottle, held_note

DEFAULT_BLOCKED = ("127.255.255.0/24",)
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Sorted:
    """A list's answer split up: real listing codes and refusal/bogus codes."""

    listed: tuple[str, ...]
    blocked: tuple[str, ...]


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Networks from text (ValueError on a bad one)."""
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def sort_answer(addresses: Sequence[str], blocked: Sequence[Network]) -> Sorted:
    """Split the A records a list returned into listing codes and refusals."""
    listed: list[str] = []
    refused: list[str] = []
    for text in addresses:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            refused.append(text)
            continue
        if addr.version != 4 or addr not in LOOPBACK or any(addr in n for n in blocked):
            refused.append(text)
        else:
            listed.append(text)
    return Sorted(tuple(listed), tuple(refused))


def warn_refused(log: logging.Logger, throttle: LogThrottle, kind: str, log_id: str,
                 refused: Sequence[str]) -> None:
    """Log "``kind`` query refused" for ``refused`` ("zone=answer" strings), at most once
    per zone per the throttle's interval: a blocked list refuses every query."""
    held = _due(throttle, {r.split("=")[0] for r in refused})
    if held is not None:
        log.warning("(%s) %s query refused: %s; not counted as listed. Use a local "
                    "resolver, not a public one (or check the list's quota)%s", log_id, kind,
                    ", ".join(refused), held_note(held, "more refusals"))


def warn_failed(log: logging.Logger, throttle: LogThrottle, kind: str, log_id: str,
                zones: Sequence[str]) -> None:
    """Log "``kind`` look-ups failed" for ``zones`` (timeout, SERVFAIL, REFUSED by our
    resolver), at most once per zone per the throttle's interval: the message's
    ``*_TEMPFAIL`` symbol weighs nothing, so without this line a resolver that refuses
    us leaves every list unchecked with nothing in the log."""
    held = _due(throttle, {f"failed:{zone}" for zone in zones})
    if held is not None:
        log.warning("(%s) %s look-ups failed (DNS timeout or server failure): %s; those "
                    "lists were not checked. Check the resolvers in the check's dns "
                    "settings%s", log_id, kind, ", ".join(zones),
                    held_note(held, "more failures"))


def _due(throttle: LogThrottle, keys: Iterable[str]) -> int | None:
    """None when every key was reported recently, else the most events held back."""
    due = [held for key in sorted(keys) if (held := throttle.due(key)) is not None]
    return max(due) if due else None

"""RFC 5782 test points: is a list answering "listed" for everything?

A list that has died can be left with a wildcard record (or a domain parked with one)
that answers every query with 127.0.0.x: every client and every link would be
"listed". RFC 5782 section 5 gives the test entries a list MUST NOT contain:
127.0.0.1 (IPv4 lists), ::FFFF:7F00:1 (IPv6 lists) and the name INVALID (domain lists).
SpamAssassin has no guard; here each list's test point is asked now and then, with
the message's own look-ups (concurrently, in the same time budget), and while it
answers with a listing code the list's listings are not counted: the check reports
the list as blocked and logs why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from scanner.dns.budget import Deadline
from scanner.dns.client import DnsClient
from scanner.dns.lists import CodeMap
from scanner.dns.reverse import list_query
from scanner.throttle import LogThrottle, held_note

T = TypeVar("T")
PROBE_INTERVAL = 300.0
"""Seconds a test point's answer is believed before it is asked again."""

WILDCARD = "lists-everything"
"""The code shown in ``*_BLOCKED`` options for such a list ("zone=lists-everything")."""


def probe_name(zone: str, kind: str) -> str:
    """The RFC 5782 name that ``zone`` must not list; ``kind`` is ipv4, ipv6 or domain."""
    if kind == "domain":
        return f"invalid.{zone}"
    return list_query("127.0.0.1" if kind == "ipv4" else "::ffff:7f00:1", zone)


class ListHealth:
    """Which of a check's lists list their must-not-list test point (per process)."""

    def __init__(self, client: DnsClient, log: logging.Logger, kind: str,
                 interval: float = PROBE_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._log = log
        self._kind = kind
        self._interval = interval
        self._clock = clock
        self._known: dict[str, tuple[float, bool]] = {}  # zone -> (until, wildcards)
        self._warned = LogThrottle(600.0)

    def believed(self, zone: str) -> bool | None:
        """The zone's last answer while it is believed; None when its test point is due."""
        known = self._known.get(zone)
        return known[1] if known is not None and known[0] > self._clock() else None

    async def with_lookups(self, lookups: Awaitable[list[T]],
                           probes: Sequence[tuple[CodeMap, str]], deadline: Deadline,
                           ) -> tuple[list[T], list[bool]]:
        """``lookups``' answers and :meth:`wildcarding` of each (list, kind) of ``probes``,
        the due test points asked concurrently with the lookups. A probe believed costs
        no task (most messages: every zone is asked once per :data:`PROBE_INTERVAL`)."""
        wild = [self.believed(codes.zone) for codes, _ in probes]
        due = [i for i, known in enumerate(wild) if known is None]
        if not due:
            return await lookups, [bool(w) for w in wild]
        answers, asked = await asyncio.gather(lookups, asyncio.gather(
            *(self.wildcarding(*probes[i], deadline) for i in due)))
        for i, listed in zip(due, asked, strict=True):
            wild[i] = listed
        return answers, [bool(w) for w in wild]

    async def wildcarding(self, codes: CodeMap, kind: str, deadline: Deadline) -> bool:
        """Whether ``codes.zone`` lists its test point (False while unknown)."""
        known = self.believed(codes.zone)
        if known is not None:
            return known
        answer = await self._client.query(probe_name(codes.zone, kind), "A", deadline)
        if answer.temporary:
            return False  # unknown: the list's own answers decide, ask again next time
        listed, _ = codes.read(answer.addresses())
        self._known[codes.zone] = (self._clock() + self._interval, bool(listed))
        return bool(listed)

    def warn(self, log_id: str, zones: Sequence[str]) -> None:
        """Log, at most once per zone per ten minutes, that ``zones`` list everything."""
        due = [held for zone in sorted(zones) if (held := self._warned.due(zone)) is not None]
        if due:
            self._log.warning(
                "(%s) %s list answers 'listed' for its RFC 5782 test point (dead list "
                "or wildcard): %s; its listings are not counted. Remove it from the "
                "configuration%s", log_id, self._kind, ", ".join(sorted(zones)),
                held_note(max(due), "more"))

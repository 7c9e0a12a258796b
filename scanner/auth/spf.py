"""SPF evaluation: RFC 7208's check_host() over an async DNS lookup function.

Our own implementation because pyspf and checkdmarc resolve synchronously (pyspf with
its own resolver calls, checkdmarc is a record linter, not an evaluator of a client IP):
neither can run on the event loop under the message's DNS budget. Everything of the RFC
that decides a result is here: all eight mechanisms, ``redirect`` and ``exp``, macros,
the limit of 10 DNS-querying terms, 2 void lookups, 10 MX and 10 PTR names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from scanner.auth.psl import normalise
from scanner.auth.spf_macro import MacroContext, expand
from scanner.auth.spf_record import (
    MacroString,
    Mechanism,
    Record,
    SpfSyntaxError,
    is_spf,
    parse_macro_string,
    parse_record,
)
from scanner.dns.client import Answer
from scanner.dns.reverse import unmapped

Lookup = Callable[[str, str], Awaitable[Answer]]
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
MAX_DNS_TERMS = 10
MAX_VOID = 2
MAX_NAMES = 10


@dataclass(frozen=True, slots=True)
class SpfResult:
    """The outcome of one check_host() call."""

    result: str
    domain: str
    mechanism: str = ""
    explanation: str = ""
    reason: str = ""


class _TempError(Exception):
    pass


class _PermError(Exception):
    pass


class _State:
    """Counters shared by one evaluation and everything it includes or redirects to."""

    def __init__(self) -> None:
        self.terms = 0
        self.voids = 0
        self.ptr_name: str | None = None

    def count_term(self) -> None:
        self.terms += 1
        if self.terms > MAX_DNS_TERMS:
            raise _PermError(f"more than {MAX_DNS_TERMS} DNS-querying terms")

    def count_void(self, answer: Answer) -> None:
        if answer.void:
            self.voids += 1
            if self.voids > MAX_VOID:
                raise _PermError(f"more than {MAX_VOID} void DNS lookups")


class SpfChecker:
    """Evaluates SPF with ``lookup(name, rdtype) -> Answer`` (bound to a message budget)."""

    def __init__(self, lookup: Lookup, receiver: str = "unknown") -> None:
        self._lookup = lookup
        self._receiver = receiver

    async def check_host(self, ip: str, domain: str, sender: str, helo: str = "") -> SpfResult:
        """RFC 7208 check_host(<ip>, <domain>, <sender>)."""
        ip = unmapped(ip)
        name = normalise(domain)
        try:
            result, mech, explanation = await self._check(ip, name, sender, helo, _State())
        except _TempError as exc:
            return SpfResult("temperror", name, reason=str(exc))
        except _PermError as exc:
            return SpfResult("permerror", name, reason=str(exc))
        return SpfResult(result, name, mech, explanation)

    async def _check(self, ip: str, domain: str, sender: str, helo: str, state: _State,
                     explain: bool = True) -> tuple[str, str, str]:
        """Evaluate ``domain``'s record: (result, mechanism, explanation). ``explain``
        is False for an included record, whose exp= is never used (sections 5.2, 6.2)."""
        if not valid_domain(domain):
            return "none", "", ""
        record = await self._record(domain)
        if record is None:
            return "none", "", ""
        ctx = MacroContext(sender, domain, ip, helo, self._receiver)
        for mech in record.mechanisms:
            if await self._match(mech, ctx, state):
                result = QUALIFIERS[mech.qualifier]
                explanation = ""
                if result == "fail" and explain and record.exp is not None:
                    explanation = await self._explain(record.exp, ctx, state)
                return result, mech.text(), explanation
        if record.redirect is not None:
            state.count_term()
            target = await self._target(record.redirect, ctx, state)
            result, mech, explanation = await self._check(ip, target, sender, helo, state,
                                                          explain)
            if result == "none":
                raise _PermError(f"redirect to {target!r}, which has no SPF record")
            return result, mech, explanation
        return "neutral", "default", ""

    async def _record(self, domain: str) -> Record | None:
        answer = await self._lookup(domain, "TXT")
        if answer.temporary:
            raise _TempError(f"SPF record lookup for {domain}: {answer.status.value}")
        records = [t for t in answer.texts() if is_spf(t)]
        if not records:
            return None
        if len(records) > 1:
            raise _PermError(f"{domain} has {len(records)} SPF records")
        try:
            return parse_record(records[0])
        except SpfSyntaxError as exc:
            raise _PermError(f"{domain}: {exc}") from None

    async def _target(self, spec: MacroString | None, ctx: MacroContext, state: _State
                      ) -> str:
        if spec is None:
            return ctx.domain
        return normalise(await expand(spec, ctx, lambda: self._p_value(ctx, state)))

    async def _match(self, mech: Mechanism, ctx: MacroContext, state: _State) -> bool:
        name = mech.name
        if name == "all":
            return True
        if name in ("ip4", "ip6"):
            addr = ipaddress.ip_address(ctx.ip)
            return mech.network is not None and addr.version == mech.network.version \
                and addr in mech.network
        state.count_term()
        target = await self._target(mech.domain, ctx, state)
        if name == "include":
            return await self._include(target, ctx, state)
        if name == "a":
            return await self._match_a(target, ctx.ip, mech, state, count_void=True)
        if name == "mx":
            return await self._match_mx(target, ctx.ip, mech, state)
        if name == "ptr":
            return any(n == target or n.endswith("." + target)
                       for n in await self._validated_names(ctx.ip))
        if name == "exists":
            answer = await self._lookup(target, "A")
            if answer.temporary:
                raise _TempError(f"exists:{target}: {answer.status.value}")
            state.count_void(answer)
            return bool(answer.records)
        raise _PermError(f"unknown mechanism {name}")

    async def _include(self, target: str, ctx: MacroContext, state: _State) -> bool:
        result, _, _ = await self._check(ctx.ip, target, ctx.sender, ctx.helo, state,
                                         explain=False)
        if result == "none":
            raise _PermError(f"include:{target} has no SPF record")
        return result == "pass"

    async def _match_a(self, target: str, ip: str, mech: Mechanism, state: _State,
                       count_void: bool) -> bool:
        addr = ipaddress.ip_address(ip)
        answer = await self._lookup(target, "A" if addr.version == 4 else "AAAA")
        if answer.temporary:
            raise _TempError(f"{mech.name}:{target}: {answer.status.value}")
        if count_void:
            state.count_void(answer)
        bits = mech.cidr4 if addr.version == 4 else mech.cidr6
        return any(addr in ipaddress.ip_network(f"{a}/{bits}", strict=False)
                   for a in answer.addresses())

    async def _match_mx(self, target: str, ip: str, mech: Mechanism, state: _State) -> bool:
        answer = await self._lookup(target, "MX")
        if answer.temporary:
            raise _TempError(f"mx:{target}: {answer.status.value}")
        state.count_void(answer)
        hosts = [h for h in answer.names() if h]
        if len(hosts) > MAX_NAMES:
            raise _PermError(f"mx:{target} has more than {MAX_NAMES} MX records")
        found = await asyncio.gather(
            *(self._host_matches(h, ip, mech) for h in hosts))
        if any(f is True for f in found):
            return True
        if any(f is None for f in found):
            raise _TempError(f"mx:{target}: address lookup of an MX host failed")
        return False

    async def _host_matches(self, host: str, ip: str, mech: Mechanism) -> bool | None:
        """True/False, or None when the address lookup failed temporarily."""
        try:
            return await self._match_a(host, ip, mech, _State(), count_void=False)
        except _TempError:
            return None

    async def _validated_names(self, ip: str) -> list[str]:
        """Reverse names of ``ip`` that resolve back to it (the first 10 PTR names)."""
        addr = ipaddress.ip_address(ip)
        answer = await self._lookup(addr.reverse_pointer, "PTR")
        names = answer.names()[:MAX_NAMES]
        rdtype = "A" if addr.version == 4 else "AAAA"
        forward = await asyncio.gather(*(self._lookup(n, rdtype) for n in names))
        return [n for n, fwd in zip(names, forward, strict=True)
                if any(ipaddress.ip_address(a) == addr for a in fwd.addresses())]

    async def _p_value(self, ctx: MacroContext, state: _State) -> str:
        if state.ptr_name is None:
            names = await self._validated_names(ctx.ip)
            exact = [n for n in names if n == ctx.domain or n.endswith("." + ctx.domain)]
            state.ptr_name = (exact or names or ["unknown"])[0]
        return state.ptr_name

    async def _explain(self, spec: MacroString, ctx: MacroContext, state: _State) -> str:
        try:
            target = await self._target(spec, ctx, state)
            answer = await self._lookup(target, "TXT")
            texts = answer.texts()
            if len(texts) != 1:
                return ""
            text = parse_macro_string(texts[0], explanation=True)
            return (await expand(text, ctx, lambda: self._p_value(ctx, state),
                                 domain_spec=False))[:512]
        except (SpfSyntaxError, _PermError, _TempError, ValueError):
            return ""


_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


def valid_domain(name: str) -> bool:
    """A multi-label name of letters, digits, hyphens and underscores, labels of 1..63
    characters, at most 253 in all (an address literal like ``[192.0.2.1]`` is not)."""
    if not name or len(name) > 253 or "." not in name:
        return False
    return all(_LABEL.match(label) for label in name.split("."))

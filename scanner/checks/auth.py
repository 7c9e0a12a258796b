"""auth: SPF (MAIL FROM and HELO), DKIM, DMARC and ARC, plus Authentication-Results.

One check because DMARC needs the SPF and DKIM results. All DNS queries of a message
(SPF records, DKIM and ARC keys, the DMARC policy) run concurrently under the
``dns.budget``; a DNS timeout becomes a ``*_TEMPFAIL`` symbol (weight 0), never an
exception, so the check degrades gracefully without DNS and is on by default.

The client checked is the first untrusted relay (:mod:`scanner.auth.received`). Mail
that never passed an untrusted host (``ALL_TRUSTED``) and mail of the policy banks in
``skip_policy_banks`` (our own users' submissions) is not verified.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from scanner.auth import authres, report
from scanner.auth.arc import ArcResult, verify_arc
from scanner.auth.arc_trust import sealers_setting, trusted_override
from scanner.auth.dkim_verify import verify_all
from scanner.auth.dmarc import DmarcResult, discover, evaluate
from scanner.auth.identity import from_domains, helo_domain, sender_identity
from scanner.auth.received import Relay, chain_networks, msa_networks_option, task_origin
from scanner.auth.spf import SpfChecker, SpfResult
from scanner.checks.base import CheckContext
from scanner.config.schema import opt
from scanner.dns import Deadline, DnsSettings, get_client
from scanner.hostname import configured_hostname
from scanner.policy.effective import any_bank_in
from scanner.task import Hit, Task

log = logging.getLogger("scanner.auth")


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Settings of the auth check ([checks.settings.auth])."""

    dns: DnsSettings = opt(DnsSettings, "resolvers, timeouts and cache")
    spf: bool = opt(True, "check SPF for MAIL FROM and for the HELO name")
    dkim: bool = opt(True, "verify every DKIM signature")
    dmarc: bool = opt(True, "evaluate DMARC (needs spf and dkim)")
    arc: bool = opt(True, "verify the ARC chain")
    add_header: bool = opt(True, "add an Authentication-Results header to passed mail")
    remove_own_results: bool = opt(
        True, "with add_header: leave out Authentication-Results headers that already carry "
        "our authserv-id (forged by the sender, or from an earlier pass; RFC 8601 section 5)")
    authserv_id: str = opt("", "authserv-id of the header; empty = server.hostname or FQDN")
    trusted_networks: tuple[str, ...] = opt(
        [], "relays whose Received headers are believed; empty = [policy] mynetworks")
    internal_networks: tuple[str, ...] = opt(
        [], "our own MX/relays (also trusted); empty = trusted_networks")
    msa_networks: tuple[str, ...] = msa_networks_option()
    trust_authenticated: bool = opt(
        True, "a hop a trusted relay recorded as authenticated (ESMTPA) counts as trusted")
    skip_policy_banks: tuple[str, ...] = opt(
        ["ORIGINATING"], "policy banks whose mail is not verified (our users' own mail)")
    max_signatures: int = opt(10, "DKIM signatures verified per message", min=1, max=50)
    min_key_bits: int = opt(1024, "shorter RSA keys make a DKIM signature permerror",
                            min=512, max=8192)
    arc_trusted_sealers: tuple[str, ...] = opt(
        [], "ARC sealers (d= domains, subdomains included) whose word overrides a DMARC "
        "failure: when the chain validates, the latest ARC-Seal is theirs and their "
        "ARC-Authentication-Results say dmarc=pass, DMARC_ARC_OVERRIDE replaces the "
        "DMARC failure (docs/auth.md)")
    psl_file: str = opt("", "public suffix list file; empty = the copy shipped with the "
                        "publicsuffixlist package")


class Auth:
    """SPF, DKIM, DMARC and ARC verification."""

    name: ClassVar[str] = "auth"
    description: ClassVar[str] = "SPF, DKIM, DMARC and ARC verification; Authentication-Results"
    symbols: ClassVar[dict[str, str]] = report.SYMBOLS
    default_enabled: ClassVar[bool] = True
    kind: ClassVar[str] = "spam"
    autolearn_area: ClassVar[str] = "header"
    """Where its points count for autolearning (as in SpamAssassin: SPF, DKIM and
    DMARC results are header tests)."""
    Settings: ClassVar[type] = AuthSettings

    def __init__(self, settings: AuthSettings, context: CheckContext) -> None:
        cfg = context.config
        where = "checks.settings.auth"
        self._s = settings
        self._run_cpu = context.run_cpu
        self._dns = get_client(settings.dns, f"{where}.dns", cfg.source)
        self._nets = chain_networks(settings, cfg.policy.mynetworks, where, cfg.source)
        self._sealers = sealers_setting(settings.arc_trusted_sealers,
                                        f"{where}.arc_trusted_sealers", cfg.source)
        self._skip = {b.upper() for b in settings.skip_policy_banks}
        self._authserv_id = settings.authserv_id or configured_hostname(cfg.server.hostname)

    async def run(self, task: Task) -> Iterable[Hit]:
        if any_bank_in(task.policy_bank, self._skip):
            return []
        nets = self._nets
        origin = task_origin(task, nets.trusted, nets.internal, self._s.trust_authenticated,
                             nets.msa)
        relay = origin.first_untrusted
        if relay is None:
            return [Hit("ALL_TRUSTED", options=(origin.source,))]
        deadline = Deadline(self._s.dns.budget)
        lookup = partial(self._dns.query, deadline=deadline)
        out = await self._verify(task, relay, lookup)
        if self._s.add_header:
            if self._s.remove_own_results:
                task.drop_fields.extend(authres.own_fields(task.raw, self._authserv_id))
            task.add_headers.append(authres.header(self._authserv_id, report.resinfos(out)))
        task.dkim_valid = list(dict.fromkeys(
            f"{d.selector}:{d.domain}" for d in out.dkim if d.result == "pass"))
        hits = report.hits(out, self._s.psl_file)
        log.debug("(%s) auth: %s", task.log_id, " ".join(h.symbol for h in hits))
        if out.arc_override:
            log.info("(%s) auth: DMARC fail of %s overridden: ARC chain sealed last by the "
                     "trusted %s, which saw DMARC pass", task.log_id, out.from_domain,
                     out.arc_override)
        return hits

    async def _verify(self, task: Task, relay: Relay, lookup: Any) -> report.Outcome:
        s = self._s
        out = report.Outcome(helo=helo_domain(relay.helo) or relay.helo)
        sender = task.envelope.sender if task.envelope.sender != "<>" else ""
        out.null_sender = not sender
        mailfrom, mailfrom_domain = sender_identity(sender, relay.helo)
        out.mailfrom = sender or mailfrom
        domains = from_domains(task.message)
        out.from_domain = domains[0] if len(domains) == 1 else ""
        spf = SpfChecker(lookup, self._authserv_id)

        async def nothing() -> None:
            return None

        helo = helo_domain(relay.helo)
        jobs = [
            self._spf(spf, relay.ip, mailfrom_domain, mailfrom, relay.helo) if s.spf
            else nothing(),
            self._spf(spf, relay.ip, helo, f"postmaster@{helo}", relay.helo)
            if s.spf and helo and sender else nothing(),
            verify_all(task.raw, lookup, self._run_cpu, s.max_signatures, s.min_key_bits)
            if s.dkim else nothing(),
            verify_arc(task.raw, lookup, self._run_cpu, s.min_key_bits) if s.arc
            else nothing(),
            discover(out.from_domain, lookup, s.psl_file) if s.dmarc and out.from_domain
            else nothing(),
        ]
        spf_mf, spf_helo, dkim, arc, policy = await asyncio.gather(*jobs)
        out.spf = spf_mf if isinstance(spf_mf, SpfResult) else None
        out.spf_helo = spf_helo if isinstance(spf_helo, SpfResult) else None
        out.dkim_checked = s.dkim
        out.dkim = list(dkim) if dkim else []
        out.arc = arc if isinstance(arc, ArcResult) else None
        if s.dmarc:
            out.dmarc = self._dmarc(out, domains, policy)
            if out.dmarc.result == "fail":
                out.arc_override = trusted_override(out.arc, out.from_domain, self._sealers,
                                                    s.psl_file)
        return out

    async def _spf(self, spf: SpfChecker, ip: str, domain: str, sender: str, helo: str
                   ) -> SpfResult:
        if not domain:
            return SpfResult("none", "", reason="no domain to check")
        return await spf.check_host(ip, domain, sender, helo)

    def _dmarc(self, out: report.Outcome, domains: list[str], policy: Any
               ) -> DmarcResult:
        if not domains:
            return DmarcResult("permerror", reason="no From domain")
        if len(domains) > 1:
            return DmarcResult("permerror", reason="several From domains")
        # SPF's identity is MAIL FROM, or postmaster@HELO for the null sender (RFC 7489 4.1)
        spf = (out.spf.result, out.spf.domain) if out.spf is not None else None
        return evaluate(out.from_domain, policy, spf, out.dkim, self._s.psl_file)

"""DMARC (RFC 7489): policy discovery, identifier alignment and the policy to apply.

Our own implementation over :mod:`scanner.dns` for the same reason as SPF: the Python
DMARC packages resolve synchronously. Discovery looks at ``_dmarc.<From domain>``, then
at ``_dmarc.<organizational domain>`` (public suffix list). A message passes when SPF or
any DKIM signature passes *and* is aligned with the From domain (relaxed: same
organizational domain; strict: same name). A failing message gets the domain's policy
(``sp`` for subdomains), downgraded one step when ``pct`` sampling leaves it out.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from scanner.auth.dkim_verify import DkimResult
from scanner.auth.psl import normalise, org_domain
from scanner.dns.client import Answer

Lookup = Callable[[str, str], Awaitable[Answer]]
POLICIES = ("none", "quarantine", "reject")
DOWNGRADE = {"reject": "quarantine", "quarantine": "none", "none": "none"}


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """The tags of a DMARC record that decide the outcome."""

    p: str
    sp: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100


@dataclass(frozen=True, slots=True)
class Discovery:
    """The record found for a From domain: status ok, none, temperror or permerror."""

    status: str
    record: DmarcRecord | None = None
    domain: str = ""  # where the record was found
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DmarcResult:
    """DMARC result for the message (RFC 8601 dmarc=) and the disposition."""

    result: str  # pass, fail, none, temperror, permerror
    from_domain: str = ""
    policy: str = ""  # the domain's requested policy (p or sp)
    disposition: str = "none"  # after pct sampling
    spf_aligned: bool = False
    dkim_aligned: bool = False
    reason: str = ""


def parse_record(text: str) -> DmarcRecord | None:
    """A DMARC record, or None when it is not a valid one (section 6.3, 6.6.3).

    After ``v=DMARC1``, syntax errors are ignored as section 6.3 asks: an item that is
    no ``tag=value`` is skipped, a tag with an invalid value takes its default.
    """
    items = [t.strip() for t in text.split(";")]
    pairs: list[tuple[str, str]] = []
    for item in items:
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq:
            if not pairs:
                return None
            continue
        pairs.append((key.strip().lower(), value.strip()))
    if not pairs or pairs[0] != ("v", "DMARC1"):
        return None
    tagmap = dict(pairs[1:])
    p = tagmap.get("p", "").lower()
    if p not in POLICIES:
        if "rua" not in tagmap:
            return None
        p = "none"  # a record with rua but no valid p is treated as p=none
    sp = tagmap.get("sp", "").lower()
    pct_text = tagmap.get("pct", "100")
    pct = int(pct_text) if pct_text.isdigit() and int(pct_text) <= 100 else 100
    return DmarcRecord(
        p=p, sp=sp if sp in POLICIES else None,
        adkim="s" if tagmap.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tagmap.get("aspf", "r").lower() == "s" else "r",
        pct=pct)


def is_dmarc(text: str) -> bool:
    """Does the TXT record start with the tag ``v=DMARC1`` (section 6.6.3 steps 2, 4)?

    The tag name is case-insensitive and may have white space around ``=``; the version
    is exactly ``DMARC1`` (``v=DMARC10`` or ``v=spf1`` is some other record)."""
    key, eq, value = text.split(";", 1)[0].partition("=")
    return bool(eq) and key.strip().lower() == "v" and value.strip() == "DMARC1"


async def discover(from_domain: str, lookup: Lookup, psl_file: str = "") -> Discovery:
    """Find the policy record for ``from_domain`` (section 6.6.3).

    The organizational domain is asked only when the From domain has no DMARC record at
    all: several records, or one that is not valid, end discovery there with no policy
    (steps 3, 5 and 6), so a subdomain's broken record never borrows its parent's policy.
    """
    tried = [from_domain]
    org = org_domain(from_domain, psl_file)
    if org and org != from_domain:
        tried.append(org)
    for domain in tried:
        answer = await lookup(f"_dmarc.{domain}", "TXT")
        if answer.temporary:
            return Discovery("temperror", domain=domain, reason=answer.status.value)
        records = [t for t in answer.texts() if is_dmarc(t)]
        if not records:
            continue
        if len(records) > 1:
            return Discovery("none", domain=domain, reason=f"several DMARC records at {domain}")
        record = parse_record(records[0])
        if record is None:
            return Discovery("none", domain=domain, reason=f"invalid DMARC record at {domain}")
        return Discovery("ok", record, domain)
    return Discovery("none")


def aligned(domain: str, from_domain: str, mode: str, psl_file: str = "") -> bool:
    """Identifier alignment (section 3.1): strict = same name, relaxed = same org domain."""
    domain, from_domain = normalise(domain), normalise(from_domain)
    if not domain or not from_domain:
        return False
    if mode == "s":
        return domain == from_domain
    return org_domain(domain, psl_file) == org_domain(from_domain, psl_file)


def evaluate(from_domain: str, found: Discovery, spf: tuple[str, str] | None,
             dkim: Sequence[DkimResult], psl_file: str = "",
             sample: Callable[[], float] = random.random) -> DmarcResult:
    """The DMARC result from the discovered policy, SPF ``(result, domain)`` and DKIM."""
    if found.status != "ok" or found.record is None:
        status = "temperror" if found.status == "temperror" else "none"
        return DmarcResult(status, from_domain, reason=found.reason)
    rec = found.record
    spf_ok = bool(spf and spf[0] == "pass" and aligned(spf[1], from_domain, rec.aspf, psl_file))
    dkim_ok = any(d.result == "pass" and aligned(d.domain, from_domain, rec.adkim, psl_file)
                  for d in dkim)
    subdomain = from_domain != found.domain
    policy = (rec.sp or rec.p) if subdomain else rec.p
    if spf_ok or dkim_ok:
        return DmarcResult("pass", from_domain, policy, "none", spf_ok, dkim_ok)
    could_pass = (spf is not None and spf[0] == "temperror"
                  and aligned(spf[1], from_domain, rec.aspf, psl_file)) or any(
        d.result == "temperror" and aligned(d.domain, from_domain, rec.adkim, psl_file)
        for d in dkim)
    if could_pass:
        return DmarcResult("temperror", from_domain, policy,
                           reason="an aligned identifier could not be checked")
    disposition = policy if sample() * 100 < rec.pct else DOWNGRADE[policy]
    return DmarcResult("fail", from_domain, policy, disposition)

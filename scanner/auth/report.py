"""Turn authentication results into symbols (weights are data) and A-R resinfo items.

Symbol names avoid the ``_FAIL`` suffix, which the pipeline reserves for a crashed
check: SPF's "fail" is ``SPF_HARDFAIL``, a DNS timeout is ``*_TEMPFAIL``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scanner.auth.arc import ArcResult
from scanner.auth.authres import ResInfo
from scanner.auth.dkim_verify import DkimResult
from scanner.auth.dmarc import DmarcResult, aligned
from scanner.auth.spf import SpfResult
from scanner.task import Hit

SPF_NAMES = {"pass": "PASS", "fail": "HARDFAIL", "softfail": "SOFTFAIL", "neutral": "NEUTRAL",
             "none": "NONE", "temperror": "TEMPFAIL", "permerror": "PERMERROR"}

SYMBOLS = {
    "ALL_TRUSTED": "no untrusted relay handled the message: nothing to verify",
    "SPF_PASS": "SPF pass for the envelope sender",
    "SPF_HARDFAIL": "SPF fail (-all) for the envelope sender",
    "SPF_SOFTFAIL": "SPF softfail (~all) for the envelope sender",
    "SPF_NEUTRAL": "SPF neutral for the envelope sender",
    "SPF_NONE": "the envelope sender domain publishes no SPF record",
    "SPF_TEMPFAIL": "SPF could not be checked: DNS timeout or server failure",
    "SPF_PERMERROR": "the envelope sender domain's SPF record is broken",
    "SPF_HELO_PASS": "SPF pass for the HELO name",
    "SPF_HELO_HARDFAIL": "SPF fail for the HELO name",
    "SPF_HELO_SOFTFAIL": "SPF softfail for the HELO name",
    "SPF_HELO_NEUTRAL": "SPF neutral for the HELO name",
    "SPF_HELO_NONE": "the HELO name publishes no SPF record (or is no domain)",
    "SPF_HELO_TEMPFAIL": "SPF for the HELO name could not be checked (DNS)",
    "SPF_HELO_PERMERROR": "the HELO name's SPF record is broken",
    "DKIM_SIGNED": "the message carries a DKIM signature",
    "DKIM_VALID": "at least one DKIM signature verifies",
    "DKIM_VALID_AU": "a DKIM signature of the author's (From) domain verifies",
    "DKIM_INVALID": "signed, but no DKIM signature verifies",
    "DKIM_TEMPFAIL": "a DKIM key could not be fetched (DNS) and none verified",
    "DMARC_PASS": "DMARC pass: aligned SPF or DKIM",
    "DMARC_REJECT": "DMARC fail and the From domain asks for reject",
    "DMARC_QUARANTINE": "DMARC fail and the From domain asks for quarantine",
    "DMARC_POLICY_NONE": "DMARC fail; the From domain's policy is none (monitoring)",
    "DMARC_ARC_OVERRIDE": "DMARC fail overridden: a trusted ARC sealer saw it pass upstream "
                          "(arc_trusted_sealers)",
    "DMARC_NA": "the From domain publishes no DMARC policy",
    "DMARC_TEMPFAIL": "DMARC could not be evaluated: DNS timeout or server failure",
    "DMARC_PERMERROR": "no usable From domain (missing, or several domains)",
    "ARC_VALID": "the ARC chain validates",
    "ARC_INVALID": "the ARC chain is broken",
    "ARC_TEMPFAIL": "an ARC key could not be fetched (DNS)",
}


@dataclass(slots=True)
class Outcome:
    """Everything the auth check found for one message."""

    mailfrom: str = ""  # address SPF checked for MAIL FROM ('' = not checked)
    null_sender: bool = False
    spf: SpfResult | None = None
    helo: str = ""
    spf_helo: SpfResult | None = None
    from_domain: str = ""
    dkim: list[DkimResult] = field(default_factory=list)
    dkim_checked: bool = False
    dmarc: DmarcResult | None = None
    arc: ArcResult | None = None
    arc_override: str = ""  # the trusted sealer that overrides a DMARC failure


def hits(out: Outcome, psl_file: str = "") -> list[Hit]:
    found: list[Hit] = []
    if out.spf is not None:
        found.append(Hit(f"SPF_{SPF_NAMES[out.spf.result]}", options=_opts(out.spf.domain)))
    if out.spf_helo is not None:
        found.append(Hit(f"SPF_HELO_{SPF_NAMES[out.spf_helo.result]}",
                         options=_opts(out.spf_helo.domain)))
    found += _dkim_hits(out, psl_file)
    if out.dmarc is not None:
        if out.arc_override and out.dmarc.result == "fail":
            found.append(Hit("DMARC_ARC_OVERRIDE",
                             options=(out.dmarc.from_domain, out.arc_override)))
        else:
            found.append(Hit(_dmarc_symbol(out.dmarc), options=_opts(out.dmarc.from_domain)))
    if out.arc is not None and out.arc.result != "none":
        symbol = {"pass": "ARC_VALID", "temperror": "ARC_TEMPFAIL"}.get(out.arc.result,
                                                                      "ARC_INVALID")
        found.append(Hit(symbol))
    return found


def _dkim_hits(out: Outcome, psl_file: str) -> list[Hit]:
    # a signature that fails under a key in testing mode (t=y) counts as none (RFC 6376)
    counted = [d for d in out.dkim if d.result == "pass" or not d.testing]
    if not counted:
        return []
    found = [Hit("DKIM_SIGNED", options=tuple(dict.fromkeys(d.domain for d in counted
                                                             if d.domain)))]
    valid = [d for d in counted if d.result == "pass"]
    if valid:
        found.append(Hit("DKIM_VALID", options=tuple(dict.fromkeys(d.domain for d in valid))))
        if out.from_domain and any(aligned(d.domain, out.from_domain, "r", psl_file)
                                   for d in valid):
            found.append(Hit("DKIM_VALID_AU", options=(out.from_domain,)))
    elif any(d.result == "temperror" for d in counted):
        found.append(Hit("DKIM_TEMPFAIL"))
    else:
        found.append(Hit("DKIM_INVALID", options=tuple(
            f"{d.domain or '?'}: {d.reason}"[:120] for d in counted)))
    return found


def _dmarc_symbol(result: DmarcResult) -> str:
    if result.result == "fail":
        return {"reject": "DMARC_REJECT", "quarantine": "DMARC_QUARANTINE"}.get(
            result.disposition, "DMARC_POLICY_NONE")
    return {"pass": "DMARC_PASS", "none": "DMARC_NA", "temperror": "DMARC_TEMPFAIL"}.get(
        result.result, "DMARC_PERMERROR")


def _opts(value: str) -> tuple[str, ...]:
    return (value,) if value else ()


def resinfos(out: Outcome) -> list[ResInfo]:
    """The A-R items, in the order spf, dkim, dmarc, arc."""
    items: list[ResInfo] = []
    if out.spf is not None:
        prop = ("smtp.helo", out.helo) if out.null_sender else ("smtp.mailfrom", out.mailfrom)
        items.append(ResInfo("spf", out.spf.result, _spf_comment(out.spf), [prop]))
    if out.spf_helo is not None and not out.null_sender:
        items.append(ResInfo("spf", out.spf_helo.result, _spf_comment(out.spf_helo),
                             [("smtp.helo", out.helo)]))
    if out.dkim_checked:
        if not out.dkim:
            items.append(ResInfo("dkim", "none"))
        for d in out.dkim:
            reason = d.reason if d.result != "pass" else ""
            comment = "; ".join(c for c in (reason, "key in testing mode t=y" if d.testing
                                            else "") if c)
            items.append(ResInfo("dkim", d.result, comment,
                                 [("header.d", d.domain), ("header.s", d.selector),
                                  ("header.b", d.header_b)]))
    if out.dmarc is not None:
        dm = out.dmarc
        comment = f"p={dm.policy} dis={dm.disposition}" if dm.policy else dm.reason
        props = [("header.from", dm.from_domain)]
        if out.arc_override and dm.result == "fail":
            # a local policy override: RFC 7489's local_policy, as RFC 8617 7.2 reports
            # one based on ARC. No registered A-R property carries it (dmarc has only
            # header.from and policy.dmarc), so the comment says it
            comment = (f"p={dm.policy} dis=none; local_policy override: trusted ARC "
                       f"sealer {out.arc_override}")
        items.append(ResInfo("dmarc", dm.result, comment, props))
    if out.arc is not None:
        comment = f"i={out.arc.instances}" if out.arc.instances else ""
        items.append(ResInfo("arc", out.arc.result, comment))
    return items


def _spf_comment(result: SpfResult) -> str:
    if result.reason:
        return result.reason
    if result.mechanism:
        return f"{result.domain}: {result.mechanism}"
    return ""

"""Trusted ARC sealers: a local policy override of a DMARC failure (RFC 8617 section 7.2,
RFC 7489 section 10.2).

A mailing list that tags the Subject or appends a footer breaks the author's DKIM
signature, and its own envelope sender does not align: DMARC fails at our end although
the list saw the message pass. ``arc_trusted_sealers`` names the intermediaries whose
word on that we take. A DMARC failure is overridden only when all of these hold:

1. the ARC chain validates (``arc=pass``: structure, the latest ARC-Message-Signature
   and every ARC-Seal verify);
2. the *latest* ARC-Seal (the highest instance, added by the hop that handed the
   message to us or to our trusted relays) is from a listed domain or a subdomain of
   one. A listed domain only in an earlier instance does not count: the hops after it,
   which we do not trust, may have changed the message, and the earlier seal says
   nothing about their changes;
3. that latest instance's ARC-Authentication-Results says DMARC passed for our From
   domain (``dmarc=pass``, ``header.from`` equal to it when given, and no other dmarc
   result for it); when it records no dmarc result at all, a ``dkim=pass`` whose
   ``header.d`` is aligned (relaxed) with the From domain counts instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from scanner.auth.arc import ArcResult
from scanner.auth.authres import ResInfo, aar_results
from scanner.auth.dmarc import aligned
from scanner.auth.psl import normalise
from scanner.auth.spf import valid_domain
from scanner.errors import ConfigError


def sealers_setting(values: Sequence[str], key: str, source: str) -> tuple[str, ...]:
    """The ``arc_trusted_sealers`` setting as normalised domain names; ConfigError naming
    the key and the file for an entry that is not a domain name."""
    found = []
    for value in values:
        name = normalise(value) if isinstance(value, str) else ""
        if not valid_domain(name):
            raise ConfigError(f"{source}: '{key}': {value!r} is not a domain name; list the "
                              "d= domains of the ARC-Seals to trust, like "
                              "\"lists.example.org\"")
        found.append(name)
    return tuple(dict.fromkeys(found))


def trusted_override(arc: ArcResult | None, from_domain: str, trusted: Sequence[str],
                     psl_file: str = "") -> str:
    """The trusted sealer whose chain lets a DMARC failure of ``from_domain`` be
    overridden, or '' when the failure stands (see the module's rule)."""
    if arc is None or arc.result != "pass" or not trusted or not from_domain:
        return ""
    sealer = normalise(arc.sealer)
    if not any(sealer == t or sealer.endswith("." + t) for t in trusted):
        return ""
    if not upstream_passed(aar_results(arc.sealer_results), normalise(from_domain),
                           psl_file):
        return ""
    return sealer


def upstream_passed(items: list[ResInfo], from_domain: str, psl_file: str = "") -> bool:
    """Did the sealer record DMARC passing for ``from_domain`` (or, recording no dmarc
    result, an aligned DKIM pass)?"""
    dmarc = [i for i in items if i.method == "dmarc"
             and normalise(dict(i.props).get("header.from", from_domain)) == from_domain]
    if dmarc:
        return all(i.result == "pass" for i in dmarc)
    if any(i.method == "dmarc" for i in items):
        return False  # a dmarc result for some other From domain
    return any(i.method == "dkim" and i.result == "pass"
               and aligned(dict(i.props).get("header.d", ""), from_domain, "r", psl_file)
               for i in items)

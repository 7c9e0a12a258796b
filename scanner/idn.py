"""Domain names and addresses in the one form lookups compare: the A-label (DNS) form.

An internationalised domain name has two spellings of the same name, U-labels
(``пример.рф``) and A-labels (``xn--e1afmkfd.xn--p1ai``). Everything that compares a
domain (local_domains, the per-recipient tables, allow/block lists, the public suffix
list, DNS queries for SPF, DKIM, DMARC and URIBL) uses the A-label form, as amavis
(``idn_to_ascii`` before every lookup) and SpamAssassin do.

The conversion is IDNA 2008 with the UTS #46 mapping, non-transitional (as libidn2
with ``IDN2_NONTRANSITIONAL``, which amavis and SpamAssassin call, Postfix, and today's
browsers): ``faß.de`` is ``xn--fa-hia.de``, a name of its own, where Python's built-in
``idna`` codec (IDNA 2003) maps it to ``fass.de``, somebody else's domain. The dots
U+3002, U+FF0E and U+FF61 separate labels as "." does. A label UTS #46 allows but
IDNA 2008 does not (``i❤.ws``) gets the A-label browsers use (``xn--i-7iq.ws``).

Local parts are compared with their ASCII letters folded only (amavis lower-cases
them as octets, so ``Δ`` and ``δ`` stay different): RFC 6531 leaves a UTF-8 local
part to the receiving host, and folding it by Unicode rules would make two
mailboxes one.
"""

from __future__ import annotations

import re
from functools import lru_cache

import idna

_DOTS = re.compile("[.\u3002\uff0e\uff61]")


@lru_cache(maxsize=8192)
def to_ascii(domain: str) -> str:
    """The lower-case A-label form of ``domain`` (labels kept ASCII are only lower-cased;
    a leading or final dot is kept); ``''`` when a non-ASCII label is not a valid IDN."""
    if domain.isascii():
        return domain.lower()
    labels = _DOTS.split(domain)
    try:
        return ".".join(label.lower() if label.isascii() else _alabel(label)
                        for label in labels)
    except (idna.IDNAError, UnicodeError, ValueError):
        return ""


def _alabel(label: str) -> str:
    mapped = idna.uts46_remap(label, std3_rules=False, transitional=False)
    if mapped.isascii():  # full-width or compatibility letters: "ａｂｃ" is "abc"
        return mapped.lower()
    try:
        return idna.alabel(mapped).decode("ascii").lower()
    except idna.IDNAError:
        # UTS #46 allows what IDNA 2008 leaves out (symbols and emoji, "i❤.ws"):
        # browsers go to such a name, so a link to it must reach the URIBL too
        encoded = "xn--" + mapped.encode("punycode").decode("ascii")
        if len(encoded) > 63:
            raise
        return encoded


def fold_domain(domain: str) -> str:
    """``domain`` as lookups compare it: its A-label form, or lower-cased as it is when
    it is not a valid IDN (amavis keeps such a name as given, lower-cased)."""
    return to_ascii(domain) or domain.lower()


def fold_localpart(local: str) -> str:
    """``local`` with its ASCII letters lower-cased and nothing else changed."""
    if local.isascii():
        return local.lower()
    return local.encode("utf-8", "surrogateescape").lower().decode("utf-8", "surrogateescape")


def fold_address(address: str) -> str:
    """``Local@Domain`` as lookups compare it: the local part ASCII-folded
    (:func:`fold_localpart`), the domain in A-label form (:func:`fold_domain`). A
    text without ``@`` is a local part; a leading ``.`` of a domain pattern stays."""
    local, at, domain = address.rpartition("@")
    if not at:
        return fold_localpart(address)
    return f"{fold_localpart(local)}@{fold_domain(domain)}"

"""Registered ("organizational") domains from the public suffix list.

The list is the one shipped as data in the ``publicsuffixlist`` package (refreshed with
each release), or a file given by the operator, such as Debian's
``/usr/share/publicsuffix/public_suffix_list.dat``. By default only the ICANN section is
used, as DMARC implementations do, so ``foo.github.io`` reduces to ``github.io``.
Unknown top-level labels count as one-label suffixes (``mail.example.test`` ->
``example.test``).
"""

from __future__ import annotations

import threading
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

from scanner.idn import to_ascii

# Top-level names reserved for testing and documentation (RFC 2606): in no list, but
# names under them serve test set-ups (a local DNS zone with a test blacklist).
RESERVED_TEST_TLDS = frozenset({"test", "example"})
_lock = threading.Lock()
_lists: dict[tuple[str, bool], PublicSuffixList] = {}


def suffix_list(path: str = "", icann_only: bool = True) -> PublicSuffixList:
    """The list from ``path`` (empty: the packaged copy), loaded once per process."""
    key = (path, icann_only)
    with _lock:
        psl = _lists.get(key)
        if psl is None:
            if path:
                with open(path, encoding="utf-8") as fh:
                    psl = PublicSuffixList(fh, only_icann=icann_only)
            else:
                psl = PublicSuffixList(only_icann=icann_only)
            _lists[key] = psl
    return psl


def normalise(domain: str) -> str:
    """Lowercase A-label form (:func:`scanner.idn.to_ascii`: IDNA 2008, as libidn2)
    without the final dot; '' when not a usable name."""
    return to_ascii(domain.strip()).rstrip(".")


@lru_cache(maxsize=8192)
def org_domain(domain: str, path: str = "", icann_only: bool = True) -> str:
    """The registered domain of ``domain`` (``a.b.example.co.uk`` -> ``example.co.uk``).

    A public suffix itself is its own organizational domain (RFC 7489 section 3.2).
    """
    name = normalise(domain)
    if not name:
        return ""
    return suffix_list(path, icann_only).privatesuffix(name) or name


@lru_cache(maxsize=8192)
def known_org_domain(domain: str) -> str:
    """Like :func:`org_domain`, but ``""`` unless ``domain`` ends in a suffix the list
    knows (``www.example.o``, cut short by a line break, has no registered domain)."""
    name = normalise(domain)
    if not name:
        return ""
    try:
        return suffix_list().privatesuffix(name, accept_unknown=False) or ""
    except Exception:  # labels the list's code rejects
        return ""


@lru_cache(maxsize=8192)
def known_suffix(domain: str) -> bool:
    """Whether ``domain`` (lower-case ASCII) ends in a public suffix of the packaged list
    (the whole name is asked: the list has ``co.za`` but no rule for ``za`` alone), or
    in one of :data:`RESERVED_TEST_TLDS`: ``www.example.html`` or ``example.comhttp``
    (a word glued to a link) is no name that can resolve."""
    if domain.rpartition(".")[2] in RESERVED_TEST_TLDS:
        return True
    try:
        return suffix_list().publicsuffix(domain, accept_unknown=False) is not None
    except Exception:  # labels the list's code rejects
        return False

"""``policy.local_domains`` reads as amavis's ``@local_domains_acl`` (README.lookups)."""

from __future__ import annotations

import dataclasses

import pytest

from scanner.config.policy import PolicyConfig
from scanner.policy.effective import is_local


def _local(entries: list[str], address: str) -> bool:
    return is_local(dataclasses.replace(PolicyConfig(), local_domains=tuple(entries)), address)


@pytest.mark.parametrize(("entries", "address", "expected"), [
    # a leading dot: the domain itself and its subdomains (Debian's ".$mydomain")
    ([".example.com"], "user@example.com", True),
    ([".example.com"], "user@mail.example.com", True),
    ([".example.com"], "user@badexample.com", False),
    # no dot: that domain only
    (["example.com"], "user@example.com", True),
    (["example.com"], "user@mail.example.com", False),
    # case does not matter
    ([".Example.COM"], "User@MAIL.example.com", True),
    # a full address
    (["boss@example.org"], "boss@example.org", True),
    (["boss@example.org"], "other@example.org", False),
    # negation: the first match decides
    (["!lists.example.com", ".example.com"], "x@lists.example.com", False),
    (["!lists.example.com", ".example.com"], "x@example.com", True),
    ([".example.com", "!lists.example.com"], "x@lists.example.com", True),
    # "." matches every domain, "!." none
    (["."], "anyone@anywhere.test", True),
    (["!.", "."], "anyone@anywhere.test", False),
    # an IDN domain is one domain in its A-label and its U-label forms, either way
    # round (amavis's lookup_acl compares idn_to_ascii forms)
    (["example.xn--p1ai"], "user@example.рф", True),
    ([".xn--e1afmkfd.xn--p1ai"], "user@почта.пример.рф", True),
    (["пример.рф"], "user@xn--e1afmkfd.xn--p1ai", True),
    (["!Пример.РФ", "."], "user@ПРИМЕР.рф", False),
    (["boss@пример.рф"], "Boss@xn--e1afmkfd.xn--p1ai", True),
    # IDNA 2008: faß.de is not fass.de
    (["fass.de"], "user@faß.de", False),
    # a UTF-8 local part keeps its case: only ASCII letters fold
    (["δοκιμή@example.com"], "Δοκιμή@example.com", False),
    (["δοκιμή@example.com"], "δοκιμή@EXAMPLE.com", True),
])
def test_entries_match_as_amavis_reads_them(entries: list[str], address: str,
                                             expected: bool) -> None:
    assert _local(entries, address) is expected


def test_an_empty_list_makes_every_recipient_local() -> None:
    assert _local([], "anyone@anywhere.test")

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
])
def test_entries_match_as_amavis_reads_them(entries: list[str], address: str,
                                             expected: bool) -> None:
    assert _local(entries, address) is expected


def test_an_empty_list_makes_every_recipient_local() -> None:
    assert _local([], "anyone@anywhere.test")

"""``:addr`` and ``:name`` read malformed address headers as SpamAssassin 4 does.

The expected values are SpamAssassin 4.0.1's answers (Debian's package, its own parser:
``Email::Address::XS`` is not installed), produced by ``scripts/address_differential.py
corpora/addresses/values.txt``; that script compares every value of the file, the
SpamAssassin public corpus and random values (0 differences). Python's ``getaddresses``,
used before, gave other values for each case marked "was".
"""

from __future__ import annotations

import pytest

from scanner.rules import addrparse
from scanner.rules.views import MessageView

from .helpers import names, ruleset, run

CASES = [
    (b"a@example.com", [b"a@example.com"], []),
    (b"Alice <a@example.com>", [b"a@example.com"], [b"Alice"]),
    (b'"Doe, Alice" <a@example.com>', [b"a@example.com"], [b"Doe, Alice"]),
    (b"a@example.com (Alice Comment)", [b"a@example.com"], [b"Alice Comment"]),
    (b"friends: a@example.com, Bob <b@example.org>; c@example.net",
     [b"a@example.com", b"b@example.org", b"c@example.net"], [b"Bob"]),
    (b"Undisclosed recipients:;", [], []),
    (b"=?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <j@example.com>", [b"j@example.com"],
     ["Jörg Müller".encode()]),
    (b'"Al \\"the\\" Ice" <a@example.com>', [b"a@example.com"], [b'Al "the" Ice']),
    (b"J\xf6rg <j@example.com>", [b"j@example.com"], ["Jörg".encode()]),
    # was: address "Alice <a@example.com>" (the stray quote swallowed the bracket)
    (b'"Alice <a@example.com>', [b"a@example.com"], []),
    # was: address "Alice"
    (b'Alice" <a@example.com>', [b"a@example.com"], []),
    # was: address and name from a comment before the address
    (b"(comment first) a@example.com", [], [b"a@example.com"]),
    # was: name "(comment)"
    (b"<a(comment)@example.com>", [b"a@example.com"], []),
    # was: address "@example.org"
    (b"a@example.com b@example.org", [], [b"a@example.com b@example.org"]),
    # was: a second address "?=" and a name made of the encoded word's pieces
    (b'=?UTF-8?Q?"Foobar"_<noreply@foobar.com>?=', [b"noreply@foobar.com"], []),
    # was: the comment joined to the name
    (b"=?iso-8859-1?q?J=F6rg?= (=?utf-8?q?Kommentar?=) <j@example.com>", [b"j@example.com"],
     ["Jörg".encode()]),
    # was: addresses "alice" (no domain) and no name
    (b"alice", [], [b"alice"]),
    (b"Alice <alice>", [], [b"Alice"]),
    # was: two addresses
    (b"a@example.com <b@example.org>", [b"b@example.org"], [b"a@example.com"]),
    (b"Alice <a@example.com> <a@example.com>", [b"a@example.com"], [b"Alice"]),
    # was: address "a@example.com" (SpamAssassin's run crosses the first ">")
    (b"Alice <<a@example.com>>", [], [b"Alice"]),
    (b"<a@example.com>,<b@example.org>", [], []),
    # was: a second address "trailing" and name "Alice"
    (b"Alice <a@example.com> trailing junk", [b"a@example.com"], []),
    # was: the escaped backslash kept
    (b"Al \\\\ Ice <a@example.com>", [b"a@example.com"], [b"Al Ice"]),
    # was: address "Doe" and one name
    (b"Doe, John <j@example.com>", [b"j@example.com"], [b"Doe", b"John"]),
    # was: address "@example.com"
    (b"a@b@example.com", [b"a@b"], []),
    # was: no name (SpamAssassin keeps a name of white space as it is)
    (b'"" <a@example.com>', [b"a@example.com"], [b" "]),
    (b"Alice <a@example.com>, , Bob <b@example.org>", [b"a@example.com", b"b@example.org"],
     [b"Alice", b" ", b"Bob"]),
    # was: addresses "mailto" and "a@example.com"
    (b"Alice <mailto:a@example.com>", [], [b"Alice"]),
    (b"<@route.example:a@example.com>", [], []),
    # was: address and name of an unclosed bracket
    (b"Alice <a@example.com", [], []),
    (b"Alice@Home <a@example.com>", [b"a@example.com"], [b"Alice@Home"]),
]


def _message(value: bytes) -> bytes:
    return b"From: " + value + b"\nTo: b@example.net\nSubject: t\n\nbody\n"


@pytest.mark.parametrize("value, addr, name", CASES, ids=[c[0].decode("latin-1")[:40]
                                                          for c in CASES])
def test_addr_and_name_are_spamassassins(value: bytes, addr: list, name: list) -> None:
    view = MessageView(_message(value))
    assert view.header("From:addr") == addr
    assert view.header("From:name") == name


def test_a_folded_value_reads_as_one_line() -> None:
    view = MessageView(_message(b"Alice\n\t<a@example.com>,\n Bob <b@example.org>"))
    assert view.header("From:addr") == [b"a@example.com", b"b@example.org"]
    assert view.header("From:name") == [b"Alice", b"Bob"]


def test_a_rule_on_from_addr_sees_spamassassins_address() -> None:
    """``Alice <a@x> junk`` gave the rules a second address, ``junk``."""
    rs = ruleset(r"""
header A_JUNK  From:addr =~ /^junk$/
header A_REAL  From:addr =~ /^a\@example\.com$/
""")
    assert names(run(rs, _message(b"Alice <a@example.com> junk"))) == {"A_REAL"}


@pytest.mark.parametrize("value", [
    b"Alice <" + b"a" * 8000 + b"> junk",  # every split of the run fails
    b"<>" * 4000 + b"x",                   # every way to read the <>s fails
    b"A <a@b.com>" + b" <x>" * 2000 + b" j",
    b"<" + b"a>" * 4000 + b" x",
])
def test_the_angle_bracket_reading_is_linear(value: bytes, monkeypatch) -> None:
    """A backtracking regex tried each split again (1.4 s for the first value, and the
    second did not finish); the reader works out what follows each ">" once: its
    ``_tail`` runs at most twice per ">" of the value, whatever the value."""
    calls = 0
    tail = addrparse._Reader._tail

    def counted(self, pos):
        nonlocal calls
        calls += 1
        return tail(self, pos)

    monkeypatch.setattr(addrparse._Reader, "_tail", counted)
    addrparse.entries.cache_clear()
    addrparse.entries(value)
    assert calls <= 2 * value.count(b">") + 1

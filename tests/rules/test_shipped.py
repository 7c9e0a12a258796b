"""The shipped rule set: every rule has a message that hits it and one that must not."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from scanner.rules import badheader
from scanner.rules.compiler import RuleSet

from .conftest import CORPUS
from .helpers import names, run

HITS = sorted((CORPUS / "hits").glob("*.eml"))
MISSES = sorted((CORPUS / "misses").glob("*.eml"))


def test_shipped_rules_load_cleanly(shipped: RuleSet) -> None:
    assert shipped.problems == []
    assert len(shipped.scores()) >= 40


def test_every_reported_rule_has_a_hit_and_a_miss_message(shipped: RuleSet) -> None:
    rules = set(shipped.scores())
    assert rules == {p.stem for p in HITS} == {p.stem for p in MISSES}


@pytest.mark.parametrize("path", HITS, ids=lambda p: p.stem)
def test_hit_message(shipped: RuleSet, path: Path) -> None:
    assert path.stem in names(run(shipped, path.read_bytes()))


@pytest.mark.parametrize("path", MISSES, ids=lambda p: p.stem)
def test_miss_message(shipped: RuleSet, path: Path) -> None:
    assert path.stem not in names(run(shipped, path.read_bytes()))


@pytest.mark.parametrize("path", sorted((CORPUS / "badheader" / "hits").glob("*.eml")),
                         ids=lambda p: p.stem)
def test_bad_header_hit(path: Path) -> None:
    hits = {h.symbol: h for h in badheader.check(path.read_bytes())}
    assert path.stem in hits
    assert hits[path.stem].options[0] == f"BAD-HEADER-{badheader.CODES[path.stem]}"


@pytest.mark.parametrize("path", sorted((CORPUS / "badheader" / "misses").glob("*.eml")),
                         ids=lambda p: p.stem)
def test_bad_header_miss(path: Path) -> None:
    assert badheader.check(path.read_bytes()) == []


def test_eight_bit_allowed_with_smtputf8() -> None:
    raw = (CORPUS / "badheader" / "hits" / "BAD_HEADER_8BIT.eml").read_bytes()
    assert badheader.check(raw, smtputf8=True) == []


def test_header_section_stops_at_the_first_empty_line() -> None:
    """Exhaustive over short strings of CR, LF and text: only the header section is split,
    with the same lines as splitting the whole message and stopping at the empty line."""

    def reference(raw: bytes) -> list[bytes]:
        lines = []
        for line in raw.split(b"\n"):
            line = line[:-1] if line.endswith(b"\r") else line
            if not line:
                break
            lines.append(line)
        return lines

    for length in range(9):
        for combo in itertools.product((b"\r", b"\n", b"a"), repeat=length):
            raw = b"".join(combo)
            assert badheader.header_section(raw) == reference(raw), raw


@pytest.mark.parametrize("name", ["Jürgen Müller", "王伟", "Иван Петров", "김민수",
                                  "Łukasz Żółw", "田中 美咲"])
@pytest.mark.parametrize("encoding", ["b", "q"])
def test_non_ascii_sender_names_are_not_penalised(shipped: RuleSet, name: str,
                                                  encoding: str) -> None:
    """Every non-ASCII display name is an encoded word; that alone says nothing."""
    from email.header import Header
    encoded = Header(name, "utf-8").encode() if encoding == "b" else (
        "=?utf-8?q?" + "".join(c if c.isascii() and c.isalnum() else
                               "".join(f"={b:02X}" for b in c.encode()) for c in name) + "?=")
    raw = f"From: {encoded} <sender@example.org>\nTo: bob@example.net\n\nHi\n".encode()
    hits = names(run(shipped, raw))
    assert f"?{encoding}?" in encoded.lower()
    assert "SC_FROM_ENCODED_ASCII" not in hits
    ascii_raw = raw.replace(encoded.encode(), b"=?utf-8?b?QWNjb3VudCBTZXJ2aWNl?=")
    assert "SC_FROM_ENCODED_ASCII" in names(run(shipped, ascii_raw))


@pytest.mark.parametrize("list_header", ["List-Id: <dns.lists.example.org>",
                                         "List-Post: <mailto:dns@lists.example.org>",
                                         "Mailing-List: list dns@lists.example.org"])
def test_reply_to_the_list_is_not_a_mismatch(shipped: RuleSet, list_header: str) -> None:
    """A discussion list's Reply-To: points at the list, in another domain than From:."""
    raw = (b"From: Bob <bob@example.net>\nReply-To: dns@lists.example.org\n"
           b"To: dns@lists.example.org\nSubject: zone transfers\n\nHi\n")
    assert "SC_REPLYTO_OTHER_DOMAIN" in names(run(shipped, raw))
    listed = raw.replace(b"\n\n", b"\n" + list_header.encode() + b"\n\n", 1)
    assert "SC_REPLYTO_OTHER_DOMAIN" not in names(run(shipped, listed))

"""The cheap paragraph pre-check of ``from_text`` never hides a link the finder sees."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.rules.uris import _MAYBE_URI, COMMON_TLDS, FAST_MAX, text_uri_regex

FINDER = text_uri_regex(COMMON_TLDS)
PIECES = st.sampled_from([
    "a", "Z", "0", "9", ".", "-", "_", "@", ":", "/", "//", "www", "WWW2", "ftp", "FTP",
    "mailto:", "com", "ORG", "uk", "xn--p1ai", " ", "\t", "(", ")", ",", "<", ">", "'",
    "\xa0", "\xe9", "http", "https", "e.g.", "U.S.", "example", "?", "&", "=", "%",
])


@settings(max_examples=3000, deadline=None)
@given(st.lists(PIECES, max_size=12))
def test_no_finder_match_without_the_precheck(pieces: list[str]) -> None:
    text = "".join(pieces).encode("latin-1")
    if FINDER.search(text):
        assert _MAYBE_URI.search(text), text


MAYBE_URI_IGNORECASE = re.compile(rb"://|@|www|ftp|mailto:|[a-z0-9._-]\.[a-z]", re.I)
BYTES = st.sampled_from([b"://", b":/", b"@", b"www", b"wWw", b"ww", b"FTP", b"fTp", b"ft",
                         b"mailto:", b"MAILTO:", b"mailto", b"Mailt", b".", b"a.", b".b", b"_.",
                         b"-.", b"..", b"Z.Q", b"9.x", b"\xe9.", b".\xe9", b" ", b"\n", b"m", b"f"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(BYTES | st.binary(max_size=3), max_size=30).map(b"".join))
def test_the_precheck_answers_as_its_ignorecase_form(text: bytes) -> None:
    assert bool(_MAYBE_URI.search(text)) == bool(MAYBE_URI_IGNORECASE.search(text))


LONG = st.lists(st.sampled_from(["www.", "http://", "mailto:", "a.", "a-", "x@y.", "1.",
                                 "com", " ", "\t", "a" * 50, ".org/", "@"]), max_size=400)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(PIECES, max_size=40).map("".join), LONG.map("".join)))
def test_both_engines_find_the_same_links(text: str) -> None:
    """The fast (re) and the guarded (regex, with timeout) engines agree match by match."""
    data = text.encode("latin-1")
    fast = [(m.span(), m.groups()) for m in FINDER.fast.finditer(data)]
    guarded = [(m.span(), m.groups()) for m in FINDER.guarded.finditer(data, timeout=10)]
    assert fast == guarded


def test_long_paragraphs_go_to_the_guarded_engine() -> None:
    short = b"see www.example.com now"
    long = short + b" " * FAST_MAX
    assert type(next(FINDER.finditer(short))) is type(FINDER.fast.search(short))
    assert type(next(FINDER.finditer(long))) is type(FINDER.guarded.search(long))
    assert type(FINDER.fast.search(short)) is not type(FINDER.guarded.search(long))
    assert [m.group(0) for m in FINDER.finditer(long)] == [b"www.example.com"]

"""The cheap paragraph pre-check of ``from_text`` never hides a link the finder sees."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.rules.uris import _MAYBE_URI, COMMON_TLDS, text_uri_regex

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

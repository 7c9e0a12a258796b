"""A URI's octets for the uri rules: the same as the per-character test they replaced."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.rules.views import _uri_octets


def old_uri_octets(u: str) -> bytes:
    return u.encode("utf-8", "replace") if any(ord(c) > 255 for c in u) else u.encode("latin-1")


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF),
               max_size=20))
def test_octets_as_the_per_character_test(uri: str) -> None:
    assert _uri_octets(uri) == old_uri_octets(uri)


def test_edges() -> None:
    for uri in ("", "http://a.test/\xff", "http://a.test/\u0100", "http://\ud800.test/",
                "http://\xe9\u20ac.test/", "http://a.test/\x00"):
        assert _uri_octets(uri) == old_uri_octets(uri)

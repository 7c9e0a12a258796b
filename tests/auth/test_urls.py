"""scanner.auth.urls finds exactly what its two patterns with their lookbehind find.

The finders check the character before a match in Python (``_after``) instead of in the
pattern, which is faster; these tests compare them with the patterns as first written.
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from scanner.auth import urls

URL_WITH_BOUNDARY = re.compile(
    r"(?i)(?-i:(?<![A-Za-z0-9_]))(?:https?|ftp)://([^\s/?#<>\"'\\\[\]()|]+|\[[0-9a-f:.]+\])")
WWW_WITH_LOOKBEHIND = re.compile(
    r"(?i)(?-i:(?<![A-Za-z0-9_.@/-]))((?:www\d{0,3}|ftp)\.[a-z0-9_\u00a1-\uffff.-]+)")

PIECES = ["http://", "HTTPS://", "ftp://", "www.", "WWW1.", "ftp.", "FTP", "www", "ww", "w",
          ".", "@", "/",
          "-", "_", "x", "é", "¡", "ſ", "1", " ", "\n", "[", "::1]", "a.b", "<", ">", "\"",
          "=", "?", "#", ":", "%41", "\u200b", "ü.de", "example.com", "請"]


def reference(text: str) -> list[str]:
    return ([m.group(1) for m in URL_WITH_BOUNDARY.finditer(text)]
            + [m.group(1) for m in WWW_WITH_LOOKBEHIND.finditer(text)])


def ours(text: str) -> list[str]:
    out = [m.group(1) for m in urls._after(urls._URL, urls._NOT_AFTER_URL, text)]
    return out + [m.group(1) for m in urls._after(urls._WWW, urls._NOT_AFTER_WWW, text)]


@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=40).map("".join))
def test_the_finders_match_the_lookbehind_patterns(text: str) -> None:
    assert ours(text) == reference(text)


def test_refused_starts_are_retried_one_character_later() -> None:
    # "xwww." is refused at its first "w"; a later "www." after a non-word character
    # inside the refused run must still be found, as the lookbehind pattern finds it
    for text in ("xwww.a¡www.b.com", "ahttp://x.com http://y.org", "_www.a.com www.c.net",
                 "http://a:www.b.com", "Ahttp://no.example", "www.ok.example"):
        assert ours(text) == reference(text), text


def test_hosts_of_a_text() -> None:
    found = urls.from_text("see http://user@Shop.Example.COM:8080/x and www.other.example, "
                           "not xwww.hidden.example or me@www.mail.example; "
                           "http://[2001:db8::1]/ http://3232235777/")
    assert found.hosts == ["shop.example.com", "www.other.example"]
    assert found.ips == ["2001:db8::1", "192.168.1.1"]

"""scanner.auth.urls finds exactly what its patterns as first written find.

The finders check the character before a match in Python (``_after``) instead of in the
pattern, and every pattern spells its letters' cases out in classes instead of ``(?i)``
(both faster); these tests compare them with the patterns as first written.
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

# the patterns as first written, IGNORECASE
ATTR_IGNORECASE = re.compile(
    r"""(?i)\b(?:href|src|action)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
ENCODED_URL_IGNORECASE = re.compile(r"(?i)(?:https?|ftp)%3a%2f%2f")
NOT_LINKS_IGNORECASE = re.compile(
    r"""(?i)<!doctype[^>]{0,1000}>|\bxmlns(?::[\w.-]{1,40})?\s{0,5}=\s{0,5}"""
    r"""(?:"[^"]{0,1000}"|'[^']{0,1000}'|[^\s>]{1,1000})""")

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


MARKUP = ["href", "HREF", "hReF", "src", "SRC", "\u017frc", "action", "ACTİON", "actıon",
          "ACTION", "xmlns", "XMLNS", "xmln\u017f", ":o", "<!doctype", "<!DOCTYPE", "<!DOCTYPE",
          "<!", "<", ">", "=", " = ", "\"", "'", "x", "a", "_", "é", " ", "\n", "\t",
          "https%3a%2f%2f", "HTTP%3A%2F%2F", "ftp%3A%2f%2F", "http\u017f%3a%2f%2f", "%3a",
          "%2f", "http", "ftp", "/"]


def spans(pattern: re.Pattern[str], text: str) -> list[tuple[tuple[int, int], tuple]]:
    return [(m.span(), m.groups()) for m in pattern.finditer(text)]


@given(st.lists(st.sampled_from(MARKUP) | st.text(max_size=3), max_size=40).map("".join))
def test_the_markup_patterns_match_their_ignorecase_forms(text: str) -> None:
    assert spans(urls._ATTR, text) == spans(ATTR_IGNORECASE, text)
    assert spans(urls._ENCODED_URL, text) == spans(ENCODED_URL_IGNORECASE, text)
    assert spans(urls._NOT_LINKS, text) == spans(NOT_LINKS_IGNORECASE, text)
    assert urls._NOT_LINKS.sub(" ", text) == NOT_LINKS_IGNORECASE.sub(" ", text)


def test_the_markup_patterns_find_what_the_ignorecase_forms_find() -> None:
    # the letters IGNORECASE also takes (U+017F for s, U+0130 and U+0131 for i), a word
    # character before the name (no boundary), and each alternative of the first letter
    text = ('<!DOCTYPE html><html xmlns:o="urn:x" XMLN\u017f=\'y\'><a HREF="http://a.example">'
            '<img \u017fRC=b.png><form ACTİON=/x actıon=\'z\' xhref="no"> data-src="yes" '
            'https%3A%2F%2Fc.example ftp%3a%2f%2fd.example http\u017f%3a%2f%2fe.example')
    assert len(spans(urls._ATTR, text)) == 5
    assert urls._ENCODED_URL.search(text) is not None
    for ours_, theirs in ((urls._ATTR, ATTR_IGNORECASE),
                          (urls._ENCODED_URL, ENCODED_URL_IGNORECASE),
                          (urls._NOT_LINKS, NOT_LINKS_IGNORECASE)):
        assert spans(ours_, text) == spans(theirs, text)
    assert urls._NOT_LINKS.sub(" ", text) == NOT_LINKS_IGNORECASE.sub(" ", text)


def test_hosts_of_a_text() -> None:
    found = urls.from_text("see http://user@Shop.Example.COM:8080/x and www.other.example, "
                           "not xwww.hidden.example or me@www.mail.example; "
                           "http://[2001:db8::1]/ http://3232235777/")
    assert found.hosts == ["shop.example.com", "www.other.example"]
    assert found.ips == ["2001:db8::1", "192.168.1.1"]

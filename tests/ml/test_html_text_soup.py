"""The classifier's HTML converter on tag soup: no start tag runs past the next ``<``.

``<a <a <a ...`` without ``>`` made every ``<a`` look for its ``>`` to the end of the
part (16 KB: 3.7 s of the classifier, a 128 KB part minutes); ``<title>`` repeated
without ``</title>`` likewise. A tag's unquoted part now ends at the next ``<``, and
the title is searched only up to the last ``</title>``.
"""

from __future__ import annotations

import pytest

from scanner.ml import html_text
from scanner.ml.html_text import html_to_text


class _Counting:
    """Wraps a compiled pattern and counts the calls of one method."""

    def __init__(self, pattern: object, method: str) -> None:
        self.pattern, self.method, self.calls = pattern, method, 0

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.pattern, name)
        if name != self.method:
            return attr

        def counted(*args: object) -> object:
            self.calls += 1
            return attr(*args)

        return counted


def test_ordinary_markup_is_read_as_before() -> None:
    result = html_to_text("<html><head><title>Offer</title></head><body><p>Hi "
                          "<a href=\"http://e.test/x\">there</a> <img src='i.png' alt='logo'>"
                          "</p></body></html>")
    assert result.title == "Offer"
    assert result.urls == ["http://e.test/x", "i.png"]
    assert result.tags == ["html", "head", "body", "p", "a", "img"]
    assert result.text.split() == ["Hi", "there", "logo"]


def test_unclosed_start_tags_end_at_the_next_tag() -> None:
    result = html_to_text("<a href=x <b>bold</b>")
    assert result.tags == ["b"]  # the broken <a is text, as the next < begins a tag
    soup = html_to_text("<a " * 20000)
    assert soup.tags == [] and soup.text.count("<a") == 20000


def test_a_quoted_greater_than_still_belongs_to_the_tag() -> None:
    result = html_to_text("<a title='1 > 0' href='http://e.test/'>x</a>")
    assert result.urls == ["http://e.test/"] and result.text.strip() == "x"


@pytest.mark.parametrize("html, title", [
    ("<title>" * 20000, ""),
    ("<title>A</title>" + "<title>" * 20000, "A"),
])
def test_titles_are_looked_for_once(monkeypatch: pytest.MonkeyPatch, html: str, title: str,
                                    ) -> None:
    counting = _Counting(html_text._TITLE, "search")
    monkeypatch.setattr(html_text, "_TITLE", counting)
    assert html_to_text(html).title == title
    assert counting.calls == (1 if title else 0)

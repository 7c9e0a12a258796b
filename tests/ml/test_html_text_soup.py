"""The classifier's HTML converter on tag soup: linear time, the patterns' own results.

``<a <a <a ...`` without ``>`` made every ``<a`` look for its ``>`` to the end of the
part (16 KB: 3.7 s of the classifier, a 128 KB part minutes); so did ``<a '>' `` repeated
(the quoted ``>`` belongs to the tag), ``<script`` repeated without ``>`` and ``<title>``
repeated without ``</title>``. The tags are now found where they can end only, with the
same matches as the patterns (compared on generated markup).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.ml import html_text
from scanner.ml.html_text import html_to_text
from tests.helpers import CallCounter

PIECES = ["<", ">", "<a", "<A", " href=", "'", '"', "x", " ", "\n", "<b>", "</b>", "<p",
          "<div", "=", "http://e.test/", "alt=", "<br/>", "</", "/", "<p>", "\0"]


@settings(max_examples=500)
@given(st.lists(st.sampled_from(PIECES), max_size=18).map("".join))
def test_tags_are_the_patterns_own(text: str) -> None:
    tag, block = html_text._TAG, html_text._BLOCK_TAG
    assert html_text._tags(text)[0] == tag.findall(text)
    assert html_text._sub(tag, html_text._TAG_FAST, html_text._TAG_HEAD, "",
                          text) == tag.sub("", text)
    assert html_text._sub(block, html_text._BLOCK_TAG_FAST, html_text._BLOCK_TAG_HEAD,
                          "\n", text) == block.sub("\n", text)


def test_ordinary_markup_is_read_as_before() -> None:
    result = html_to_text("<html><head><title>Offer</title></head><body><p>Hi "
                          "<a href=\"http://e.test/x\">there</a> <img src='i.png' alt='logo'>"
                          "</p></body></html>")
    assert result.title == "Offer"
    assert result.urls == ["http://e.test/x", "i.png"]
    assert result.tags == ["html", "head", "body", "p", "a", "img"]
    assert result.text.split() == ["Hi", "there", "logo"]


@pytest.mark.parametrize("soup", ["<a ", "<a '>' ", "<p "])
def test_tags_that_cannot_end_are_not_tried(monkeypatch: pytest.MonkeyPatch,
                                            soup: str) -> None:
    counting = CallCounter(html_text._TAG, "match")
    monkeypatch.setattr(html_text, "_TAG", counting)
    result = html_to_text(soup * 20000)
    assert result.tags == []
    assert counting.calls == 0


def test_unclosed_scripts_after_the_last_tag_end_are_not_tried(
        monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CallCounter(html_text._DROP, "match")
    monkeypatch.setattr(html_text, "_DROP", counting)
    html_to_text("<p>x</p>" + "<script " * 20000)
    assert counting.calls == 0


@pytest.mark.parametrize("html, title", [
    ("<title>" * 20000, ""),
    ("<title>A</title>" + "<title>" * 20000, "A"),
])
def test_titles_are_looked_for_once(monkeypatch: pytest.MonkeyPatch, html: str, title: str,
                                    ) -> None:
    counting = CallCounter(html_text._TITLE, "search")
    monkeypatch.setattr(html_text, "_TITLE", counting)
    assert html_to_text(html).title == title
    assert counting.calls == (1 if title else 0)

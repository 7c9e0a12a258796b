"""decoders.htmlprep: tag soup that made ``html.parser`` quadratic renders the same.

``<!`` (or ``<?``, ``</``, ``<a``) with no ``>`` after it, ``<!-- >`` with no comment
end after it and lone ``<`` made the parser search the rest of the document again at
every one of them (1 MB of ``<!``: 6.9 s in the rules' renderer). :func:`prepare` writes
the ``<`` that the parser reads as text as ``&lt;``; the renderers' text, links and
tags must not change.
"""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import decoders.html_text as text_mod
import scanner.rules.html as rules_html
from decoders.htmlprep import prepare

COMMON = ["<", ">", "<!", "<?", "<b>", "<a href='x'>", "<script>", "<style>", "]>", "]]>",
          "&", "&lt;", "&amp", "&#", "60", ";", " ", "\n", "x", '"', "'", "=", "<br>", "<a",
          " href=", "<p>", "&nbsp;", "<![CDATA[", "<![if "]
NO_COMMENTS = [*COMMON, "</", "</b>", "</a>", "</script>", "http://e.test/"]  # no "-"
COMMENTS = [*COMMON, "<!--", "-->", "--", "-"]  # no "/": no end tag inside a comment


def renders(html: str) -> tuple[object, str]:
    return rules_html.render(html), text_mod.html_to_text(html)


def unprepared(html: str) -> tuple[object, str]:
    def same(value: str) -> str:
        return value

    with mock.patch.object(rules_html, "prepare", same), \
            mock.patch.object(text_mod, "prepare", same):
        return renders(html)


@settings(max_examples=400)
@given(st.one_of(st.lists(st.sampled_from(NO_COMMENTS), max_size=16).map("".join),
                 st.lists(st.sampled_from(COMMENTS), max_size=16).map("".join)))
def test_prepared_markup_renders_the_same(html: str) -> None:
    assert renders(html) == unprepared(html)


@pytest.mark.parametrize("soup", ["<!", "<?", "</", "<a ", "<!-- x>", "<", "<![if >"])
def test_no_construct_is_left_to_search_the_rest(soup: str) -> None:
    """What the parser would give up on is text once prepared: no ``<`` in it starts a
    construct that lacks its end."""
    html = prepare(soup * 5000)
    if soup == "<![if >":  # a known section with its end: the parser handles it at once
        assert html == soup * 5000
        return
    assert "<" not in html.replace("</", "") or soup == "</"
    if soup == "</":  # only after the last ">" (none here): all text
        assert "<" not in html


def test_ordinary_markup_is_left_alone() -> None:
    html = ("<html><head><style>p{}</style></head><body><!-- note --><p>Hi &amp; "
            "<a href='http://e.test/'>link</a><br></body></html>")
    assert prepare(html) == html


def test_an_end_tag_still_ends_a_script_after_an_unclosed_comment() -> None:
    rendered = rules_html.render("<script><!-- var a = 1;</script><p>shown")
    assert rendered.text.strip() == "shown"


@pytest.mark.parametrize("section", ["<![foo[ x ]]>", "<![ if mso]>", "<![1]>", "<![iffy]>"])
def test_an_unknown_marked_section_does_not_hide_the_rest(section: str) -> None:
    # html.parser raised AssertionError there: the text and links after it were lost to
    # the rules and to URIBL
    from scanner.rules.html import render

    r = render(f"<p>hello</p>{section}<p>buy at <a href=\"http://x.example/a\">here</a></p>")
    assert "buy at" in r.text and "http://x.example/a" in r.links
    assert "x ]]" not in r.text  # read as a comment to the next ">", as browsers do


def test_known_marked_sections_are_left_alone() -> None:
    html = "<![CDATA[ a ]]><![if !mso]><p>b</p><![endif]>"
    assert prepare(html) == html

"""The LinkMismatch pseudo-header: HTML links whose text shows another domain."""

from __future__ import annotations

import pytest

from scanner.rules.compiler import RuleSet
from scanner.rules.html import render
from scanner.rules.views import link_mismatch

from .helpers import message, names, run


@pytest.mark.parametrize("href, text, expected", [
    ("http://evil.example.net/x", "https://www.paypal.com/signin", ("paypal.com", "example.net")),
    ("http://192.0.2.7/login", "www.bank.example.com", ("example.com", "192.0.2.7")),
    ("https://t.example.co.uk/c?u=1", "http://www.shop.example.org", ("example.org",
                                                                     "example.co.uk")),
])
def test_deceptive_links(href: str, text: str, expected: tuple[str, str]) -> None:
    assert link_mismatch(href, text) == expected


@pytest.mark.parametrize("href, text", [
    ("https://news.example.org/a", "https://www.example.org/a"),    # same registered domain
    ("https://www.example.co.uk/", "http://shop.example.co.uk"),     # public suffix co.uk
    ("http://a.example.net/", "Click here"),                        # no address shown
    ("mailto:bob@example.net", "www.example.org"),                  # not a web link
    ("http://a.example.net/", "www.exhibitionsindia.o"),            # broken by a line break
    ("http://xn--mller-kva.de/", "www.müller.de"),                  # the same IDN
    ("javascript:void(0)", "https://www.example.org"),
    ("http://[::1", "https://www.example.org"),                     # unparsable target
    ("http://a.example.net/", "www."),
])
def test_honest_or_unclear_links(href: str, text: str) -> None:
    assert link_mismatch(href, text) is None


def test_renderer_keeps_anchor_text_and_closes_unterminated_anchors() -> None:
    found = render('<p><a href="http://a.example/">www.<b>b.example</b></a> '
                   '<a href="x">one<a href="y">two</p>')
    assert found.anchors == [("http://a.example/", "www.b.example"), ("x", "one"),
                             ("y", "two")]
    assert found.links == ["http://a.example/", "x", "y"]


def test_rule_on_a_message(shipped: RuleSet) -> None:
    html = ('<html><body><a href="http://login.example.net/">https://www.example.com/</a>'
            '</body></html>')
    raw = message(body=html, ctype="text/html; charset=utf-8")
    assert "SC_HTML_LINK_MISMATCH" in names(run(shipped, raw))
    plain = message(body="see https://www.example.com/ at http://login.example.net/\n")
    assert "SC_HTML_LINK_MISMATCH" not in names(run(shipped, plain))

"""Crafted header and HTML values that made checks fail (and so tempfail the message on
every retry): hundreds of nested comments in From, a 5,000-digit character reference."""

from __future__ import annotations

from email.message import Message
from email.utils import getaddresses

import pytest

from decoders.html_text import html_to_text as part_text
from decoders.htmlprep import shorten_charrefs
from scanner.addresses import parse_address, parse_addresses
from scanner.auth.identity import from_domains
from scanner.ml import tokens
from scanner.ml.html_text import html_to_text as classifier_text
from scanner.rules.html import render
from scanner.rules.views import MessageView

NESTED = "(" * 800 + "a@example.org" + ")" * 800 + " <b@example.org>"


def test_ordinary_addresses_parse_as_the_stdlib_parses_them() -> None:
    assert parse_address("Ann <ann@example.org>") == ("Ann", "ann@example.org")
    values = ["a@example.org, (c) B <b@example.net>", "C <c@example.com>"]
    assert parse_addresses(values) == getaddresses(values)


def test_nested_comments_read_as_no_address() -> None:
    assert parse_address(NESTED) == ("", "")
    assert parse_addresses([NESTED]) == []
    assert tokens.parseaddr(NESTED) == ("", "")
    # the rules read it as SpamAssassin does (scripts/address_differential.py agrees):
    # the address in brackets, the comments (not nested there) left in the phrase
    view = MessageView(b"From: " + NESTED.encode() + b"\n\nbody\n")
    assert view.header("From:addr") == [b"b@example.org"]
    assert view.header("From:name") == [b"(" * 799 + b")" * 799]
    msg = Message()
    msg["From"] = NESTED
    assert from_domains(msg) == []


@pytest.mark.parametrize("digits, char", [
    ("1" * 5000, "\ufffd"), ("0" * 5000, "\ufffd"), ("0" * 4990 + "65", "A"),
    ("99999999", "\ufffd"), ("0000065", "A"),
])
def test_long_character_references_decode_as_before(digits: str, char: str) -> None:
    html = f"<p>x&#{digits};y</p>"
    assert classifier_text(html).text.strip() == f"x{char}y"
    assert render(html).text.strip() == f"x{char}y"
    assert part_text(html) == f"x{char}y"


def test_short_references_are_left_alone() -> None:
    assert shorten_charrefs("&#65; &#x41; &#1234567;") == "&#65; &#x41; &#1234567;"
    assert shorten_charrefs("&#" + "7" * 9) == "&#1114112"

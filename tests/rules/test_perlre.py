"""Perl regex translation: faithful rewrites and the features that cannot be."""

from __future__ import annotations

import pytest

from scanner.rules.perlre import Untranslatable, split_delimited, translate


def matches(pattern: str, text: bytes, flags: str = "") -> bool:
    return translate(pattern, flags).compile().search(text) is not None


@pytest.mark.parametrize("pattern,text,expected", [
    (r"foo\z", b"foo\n", False),
    (r"foo\Z", b"foo\n", True),
    (r"foo$", b"foo\n", True),
    (r"\Qa.b\E", b"a.b", True),
    (r"\Qa.b\E", b"axb", False),
    (r"a\hb", b"a\tb", True),
    (r"x{2,}", b"xx", True),
    (r"a{,2}b", b"aab", True),
    (r"a{b", b"a{b", True),
    (r"\x41\x{42}\103", b"ABC", True),
    (r"\bfoo(bar)\1", b"foobarbar", True),
    (r"[[:upper:]]{3}", b"xABC", True),
    (r"\<b\>", b"<b>", True),
    (r"a(?#comment)b", b"ab", True),
    (r"[]a]+", b"]a]", True),
    (r"\w+", "é".encode(), False),
])
def test_translation_matches_perl(pattern: str, text: bytes, expected: bool) -> None:
    assert matches(pattern, text) is expected


def test_inline_flag_is_scoped_to_its_group() -> None:
    assert matches(r"a(?:(?i)b)c", b"aBc")
    assert not matches(r"a(?:(?i)b)c", b"aBC")
    assert matches(r"(?i)abc", b"ABC")


def test_x_flag_drops_whitespace_and_comments() -> None:
    assert matches("a b  c # comment", b"abc", "x")
    assert matches(r"(?x) a \  b", b"a b")


def test_caret_group_resets_flags() -> None:
    assert not matches(r"(?^:abc)", b"ABC", "i")
    assert matches(r"(?^i:abc)", b"ABC")


@pytest.mark.parametrize("pattern,feature", [
    (r"a(?{ print 1 })b", "embedded Perl code"),
    (r"\p{L}", "Unicode property \\p"),
    (r"a(?1)", "recursion"),
    (r"\x{263a}", "character above \\xff"),
    (r"(*PRUNE)a", "backtracking control verb"),
])
def test_untranslatable_features_are_named(pattern: str, feature: str) -> None:
    with pytest.raises(Untranslatable) as info:
        translate(pattern)
    assert info.value.feature == feature


def test_hyperscan_rendering_differs_where_needed() -> None:
    tr = translate(r"a\z")
    assert tr.python == r"a\Z" and tr.pcre == r"a\z"
    assert translate(r"a\Kb").pcre is None


@pytest.mark.parametrize("text,expected", [
    ("/foo\\/bar/i", ("foo\\/bar", "i", "")),
    ("m{a{2}b}s rest", ("a{2}b", "s", " rest")),
    ("m!a\\!b!", ("a!b", "", "")),
])
def test_split_delimited(text: str, expected: tuple[str, str, str]) -> None:
    assert split_delimited(text) == expected


@pytest.mark.parametrize("text", ["foo", "/unterminated", "/x/Q"])
def test_split_delimited_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        split_delimited(text)

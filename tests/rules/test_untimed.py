"""Rule regex calls without the ``regex`` timeout: only where the worst case is small.

:mod:`scanner.rules.untimed` bounds a pattern's backtracking; the engine searches a
text no longer than the rule's ``untimed_max`` without a timeout. A pattern that can
backtrack exponentially is always timed, a quadratic one only on short texts, and the
time budget still stops a catastrophic search on a long text.
"""

from __future__ import annotations

import time

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.rules.perlre import regex_flags, translate
from scanner.rules.untimed import (
    MAX_UNTIMED,
    NEVER,
    STEP_LIMIT,
    Ways,
    longest_within,
    steps,
    untimed_max,
)

from .helpers import message, ruleset, run

# measured: about 10 ns per bounded step on this VM (1.8 s for 2e8 steps of [a-z]+\d);
# an untimed call must stay far below this even on a loaded machine
UNTIMED_CPU_CEILING = 0.25


def _max(pattern: str, flags: str = "") -> int:
    return untimed_max(translate(pattern, flags).python.encode("latin-1"), flags)


def test_exponential_patterns_are_always_timed() -> None:
    for pattern in (r"(a|aa)+b", r"(a+)+b", r"(?:a|a){0,40}b", r"(?:\w+\s?)+$",
                    r"(x)\1", r"(?:a|b|ab)*c"):
        assert _max(pattern) == NEVER, pattern


def test_linear_patterns_run_untimed_on_headers_and_paragraphs() -> None:
    assert _max(r"\bfoo\b", "i") == MAX_UNTIMED  # linear: only the length cap
    assert _max(r"\b[a-z]{2,}\b", "i") >= 400  # a run of letters then a non-letter
    assert _max(r"act\s+now") >= 300  # \s+ cannot run into the 'n'


def test_overlapping_repeats_get_short_texts_only() -> None:
    cubic = _max(r"a.*b.*c")
    assert 0 <= cubic < 40
    assert _max(r"[a-z]+[a-z0-9]") < _max(r"[a-z]+\d")


def test_longest_within_is_the_largest_length_under_the_limit() -> None:
    for bound in (Ways(1, 0, 3, 1), Ways(44, 0, 30, 3), Ways(2, 2, 5, 2)):
        n = longest_within(bound)
        assert steps(bound, n) <= STEP_LIMIT < steps(bound, n + 1)
    assert longest_within(Ways(10**7, 0, 1, 0)) == NEVER


def _worst_case_seconds(pattern: str, text: bytes) -> float:
    compiled = regex.compile(pattern.encode("latin-1"), regex_flags(""))
    started = time.process_time()
    compiled.search(text, timeout=30)
    return time.process_time() - started


def test_quadratic_pattern_untimed_length_is_fast_on_its_worst_text() -> None:
    n = _max(r"[a-z]+\d")
    assert 100 <= n < 5000
    assert _worst_case_seconds(r"[a-z]+\d", b"a" * n) < UNTIMED_CPU_CEILING


ATOMS = st.sampled_from(["a", "b", "[ab]", ".", r"\s", r"\w", "[^a]", "(?:a|ab)", "(?:b|a)"])
QUANT = st.sampled_from(["", "*", "+", "?", "{0,3}", "{2,}", "*?", "{1,12}"])
PATTERN = st.lists(st.tuples(ATOMS, QUANT), min_size=1, max_size=6).map(
    lambda parts: "".join(a + q for a, q in parts))
TEXT = st.sampled_from([b"a", b"b", b"ab", b"aab", b" a", b"ba "])


@settings(max_examples=150, deadline=None)
@given(PATTERN, st.lists(TEXT, min_size=1, max_size=3))
def test_any_pattern_is_fast_on_texts_it_may_search_untimed(
        pattern: str, pieces: list[bytes]) -> None:
    """Whatever a pattern of this small grammar is, a text of ``untimed_max`` octets
    made of repeated pieces (the shapes that make backtracking blow up) is searched
    quickly: the bound is an upper bound."""
    n = min(_max(pattern), 4000)
    if n <= 0:
        return
    unit = b"".join(pieces)
    text = (unit * (n // len(unit) + 1))[:n]
    for candidate in (text, text[:-1] + b"!", b"!" + text[1:]):
        assert _worst_case_seconds(pattern, candidate) < UNTIMED_CPU_CEILING, pattern


def test_a_long_text_still_gets_the_timeout() -> None:
    """[a-z]+\\d runs untimed on a short text but is quadratic: on a message of
    100,000 letters (about a minute untimed) the budget stops it."""
    rs = ruleset("full QUAD /[a-z]+\\d/\n", use_hyperscan=False)
    assert 0 < rs.by_name["QUAD"].untimed_max < 100_000
    raw = message(body="a" * 100_000 + "\n")
    started = time.monotonic()
    result = run(rs, raw, budget=0.3)
    assert time.monotonic() - started < 3
    assert result.timed_out == "QUAD"


def test_untimed_and_timed_searches_hit_the_same() -> None:
    rs = ruleset("header SHORT Subject =~ /\\b[a-z]{2,}\\d\\b/i\n"
                 "body LONGP /\\b[a-z]{2,}\\d\\b/i\n", use_hyperscan=False)
    short = rs.by_name["SHORT"].untimed_max
    body = "x " * (short + 10) + "word7\n"
    result = run(rs, message(subject="hello word7", body=body))
    assert {h.name for h in result.hits} == {"SHORT", "LONGP"}


def test_repeat_ways_without_huge_powers() -> None:
    """``{lo,hi}`` of ``w`` ways has w**lo + ... + w**hi ways, worked out only up to
    MAX_COEF: a repeated alternation with a large bound is given up at once (the sum of
    every power took 3.5 s for ``(?:ab|cd){1,65535}``)."""
    from scanner.rules.untimed import MAX_COEF, _repeated, _Unbounded
    for ways, lo, hi in ((1, 3, 9), (2, 0, 3), (3, 2, 5), (7, 0, 0), (2, 1, 38)):
        assert _repeated(ways, lo, hi) == sum(ways ** k for k in range(lo, hi + 1))
    for ways, lo, hi in ((2, 1, 40), (2, 70, 80), (10, 0, 13)):
        assert sum(ways ** k for k in range(lo, hi + 1)) > MAX_COEF
        with pytest.raises(_Unbounded):
            _repeated(ways, lo, hi)
    started = time.process_time()
    assert _max(r"(?:ab|cd){1,65535}") == NEVER
    assert time.process_time() - started < 0.5


def test_a_long_literal_is_analysed_in_linear_time() -> None:
    """A rule of 60,000 literal characters (SpamAssassin ships phrase lists of 37-224 KB)
    is one sequence of 60,000 items: looking at what follows each one must not copy the
    rest of the list (3.4 s before, quadratic)."""
    from scanner.rules.untimed import _Bound, _parser
    tree = _parser.parse(b"hello world " * 5000, 0)
    started = time.process_time()
    assert _Bound(0).seq(list(tree), frozenset()).ways == 1
    assert time.process_time() - started < 1.0
    assert _max("hello world " * 5000) == NEVER  # longer than MAX_PATTERN: not parsed

"""Rule types, SpamAssassin semantics, metas, scores, bad input."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.rules.engine import evaluate
from scanner.rules.prefilter import hyperscan_available, required_literal

from .helpers import message, names, ruleset, run


def test_header_rules_and_modifiers() -> None:
    rs = ruleset(r"""
header H_SUBJ     Subject =~ /^hello$/
header H_NEG      X-Missing !~ /x/
header H_EXISTS   exists:Message-ID
header H_NOTEXIST exists:X-Nope
header H_UNSET    X-Missing =~ /^fallback$/ [if-unset: fallback]
header H_ADDR     From:addr =~ /^alice\@example\.org$/
header H_NAME     From:name =~ /^Alice$/
header H_RAW      Subject:raw =~ /^ =\?utf-8\?/
header H_DECODED  Subject =~ /^Grüße/
header H_ALL      ALL =~ /^To: bob\@example\.net$/m
header H_TOCC     ToCc =~ /carol/
header H_MSGID    MESSAGEID =~ /<1\@example/
""")
    raw = message(subject="=?utf-8?Q?Gr=C3=BC=C3=9Fe?=", headers="Cc: carol@example.net\n")
    got = names(run(rs, raw))
    assert got == {"H_NEG", "H_EXISTS", "H_UNSET", "H_ADDR", "H_NAME", "H_RAW", "H_DECODED",
                   "H_ALL", "H_TOCC", "H_MSGID"}
    assert "H_SUBJ" in names(run(rs, message()))


def test_body_sees_subject_first_and_rendered_html() -> None:
    rs = ruleset(r"""
body B_SUBJ  /^Special offer/
body B_HTML  /click here now/
body B_TAG   /<b>/
rawbody R_TAG /<b>click/
body B_JOIN  /here\s+now/
""")
    html = "<html><body><p><b>click</b> here\n   now</p><script>ignored()</script></body></html>\n"
    got = names(run(rs, message(subject="Special offer", body=html, ctype="text/html")))
    assert got == {"B_SUBJ", "B_HTML", "R_TAG", "B_JOIN"}


def test_body_paragraphs_and_scan_size() -> None:
    rs = ruleset("body B_CROSS /first\\s+second/\nbody B_LATE /needle/\n")
    body = "first\n\nsecond\n" + "x " * 40000 + "\nneedle\n"
    got = names(run(rs, message(body=body), body_part_scan_size=1000))
    assert got == set()
    assert names(run(rs, message(body=body), body_part_scan_size=200000)) == {"B_LATE"}


def test_uri_rules_see_text_and_html_links_and_cleaned_forms() -> None:
    rs = ruleset(r"""
uri U_TEXT  /^http:\/\/www\.example\.com\/x$/
uri U_HTML  /^https:\/\/html\.example\.org\//
uri U_IP    /^http:\/\/192\.0\.2\.1\//
uri U_MAIL  /^mailto:bob\@example\.net$/
""")
    body = ("<html><body>see www.example.com/x and <a href='https://html.example.org/a'>x</a>"
            "<a href='http://0xc0000201/'>y</a> mail bob@example.net</body></html>")
    assert names(run(rs, message(body=body, ctype="text/html"))) == {
        "U_TEXT", "U_HTML", "U_IP", "U_MAIL"}


def test_full_rule_and_multiple_counts() -> None:
    rs = ruleset("""
full  F_ONE /^Subject: hello$/m
body  B_MANY /spam/
tflags B_MANY multiple maxhits=3
score B_MANY 0.5
""")
    result = run(rs, message(body="spam spam spam spam spam\n"))
    hits = {h.name: h for h in result.hits}
    assert set(hits) == {"F_ONE", "B_MANY"}
    assert hits["B_MANY"].count == 3
    assert result.score == pytest.approx(1.0 + 1.5)


def test_meta_boolean_and_arithmetic() -> None:
    rs = ruleset(r"""
body __A /alpha/
body __B /beta/
body __C /gamma/
meta M_AND   __A && __B
meta M_NOT   __A && !__C
meta M_SUM   (__A + __B + __C) >= 2
meta M_MISS  __A && !__NOT_DEFINED
meta M_META  M_AND && M_SUM
meta M_DIV   __A / 0
""")
    result = run(rs, message(body="alpha beta\n"))
    assert names(result) == {"M_AND", "M_NOT", "M_SUM", "M_MISS", "M_META"}
    assert any("undefined rule __NOT_DEFINED" in str(p) for p in rs.problems)


def test_scores_defaults_and_disabled_rules() -> None:
    rs = ruleset("""
body R_DEFAULT /x/
body T_TESTING /x/
body R_NICE /x/
tflags R_NICE nice
body R_ZERO /x/
score R_ZERO 0
body R_SETS /x/
score R_SETS 1.5 2.5 3.5 4.5
""")
    scores = rs.scores()
    assert scores == {"R_DEFAULT": 1.0, "T_TESTING": 0.01, "R_NICE": -1.0, "R_SETS": 1.5}
    assert "R_ZERO" not in names(run(rs, message(body="x\n")))


def test_conditionals_and_replace_tags() -> None:
    rs = ruleset(r"""
ifplugin Mail::SpamAssassin::Plugin::NotInstalledAnywhere
body NO_PLUGIN /x/
endif
ifplugin Mail::SpamAssassin::Plugin::ReplaceTags
if (version >= 3.004000) && can(Mail::SpamAssassin::Conf::feature_bug6558_free)
body YES_BLOCK /x/
else
body NO_ELSE /x/
endif
endif
replace_tag   V  (?:v|\\\/)
replace_tag   I  [i1!]
replace_inter SP [\s.]*
body TAGGED /<inter SP><V><I>agra/i
replace_rules TAGGED
""")
    got = names(run(rs, message(body="x buy V. 1agra\n")))
    assert got == {"YES_BLOCK", "TAGGED"}


def test_broken_rules_are_reported_and_skipped() -> None:
    rs = ruleset("""
body GOOD /ok/
body BAD_RE /unterminated
body BAD_COMPILE /(abc/
header BAD_HEADER Subject ~~ /x/
meta BAD_META (GOOD &&
body BAD_PERL /a(?{ 1 })b/
score GOOD not-a-number
bogus_directive whatever
meta LOOP_A LOOP_B
meta LOOP_B LOOP_A
""")
    problems = {p.rule: p for p in rs.problems if p.rule}
    assert {"BAD_RE", "BAD_COMPILE", "BAD_HEADER", "BAD_META", "BAD_PERL"} <= set(problems)
    assert all(p.file == "test.cf" and p.line > 0 for p in problems.values())
    assert any("cycle" in p.message for p in rs.problems)
    assert rs.stats.untranslatable["embedded Perl code"] == 1
    assert names(run(rs, message(body="ok\n"))) == {"GOOD"}


def test_catastrophic_pattern_gives_timeout_within_budget() -> None:
    rs = ruleset("body EVIL /(a|aa)+b/\nbody LATER /zzz/\n", use_hyperscan=False)
    body = "a" * 60 + "\n"
    started = time.monotonic()
    result = run(rs, message(body=body), budget=0.3)
    assert time.monotonic() - started < 2.0
    assert result.timed_out == "EVIL"


def test_large_rule_file_loads_quickly() -> None:
    text = "".join(f"header R_{i} Subject =~ /word{i}\\b/\n" for i in range(100000))
    started = time.monotonic()
    from scanner.rules.cfparser import read_text
    from scanner.rules.model import ParsedConfig
    cfg = ParsedConfig()
    read_text(text, "big.cf", cfg)
    assert len(cfg.rules) == 100000
    assert time.monotonic() - started < 10


def test_many_urls_are_bounded() -> None:
    rs = ruleset("uri U_ANY /h9999\\.example/\nuri U_ALL /example/\ntflags U_ALL multiple\n")
    links = "".join(f"<a href='http://h{i}.example.com/p'>l</a>" for i in range(10000))
    raw = message(body=f"<html><body>{links}</body></html>", ctype="text/html")
    started = time.monotonic()
    result = run(rs, raw, budget=10.0)
    assert time.monotonic() - started < 10
    assert names(result) == {"U_ANY", "U_ALL"}


def test_html_beyond_the_first_mib_is_not_rendered() -> None:
    """Tag soup costs html.parser about 2.5 us per byte, so only the first MiB of an
    HTML part's markup is rendered (links and text after it are not seen)."""
    from decoders.html_text import MAX_HTML as PART_TEXT_MAX
    from decoders.html_text import html_to_text
    from scanner.rules.html import MAX_HTML, render

    assert MAX_HTML == PART_TEXT_MAX == 1 << 20
    soup = "<b>" * (MAX_HTML // 3)
    before = "<p>early words <a href='http://early.example/'>x</a></p>"
    after = "<p>late words <a href='http://late.example/'>y</a></p>"
    rendered = render(before + soup + after)
    assert "early words" in rendered.text and "late words" not in rendered.text
    assert rendered.links == ["http://early.example/"]
    text = html_to_text(before + soup + after)
    assert "early words" in text and "late words" not in text


def test_megabyte_header_line_is_bounded() -> None:
    rs = ruleset("header H_LONG X-Long =~ /(a|aa)+y/\nheader H_OK X-Long =~ /^a/\n")
    raw = message(headers="X-Long: " + "a" * 1_000_000 + "\n")
    started = time.monotonic()
    result = run(rs, raw, budget=0.5)
    assert time.monotonic() - started < 3
    assert result.timed_out in ("H_LONG", "H_OK")


def test_required_literal() -> None:
    assert required_literal("hello\\s+world", False) == b"hello"
    assert required_literal("a|b", False) is None
    assert required_literal("ab[cd]{0,200}xyzw", True) == b"xyzw"
    assert required_literal("(?:abc)", False) is None


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan package not installed")
def test_same_hits_with_and_without_hyperscan() -> None:
    text = "body A /foo\\s+bar/i\nbody B /^baz/\nbody C /(?<!x)qux/\nrawbody D /<i>/\n"
    raw = message(body="FOO  bar\n\nbaz qux <i>x</i>\n")
    assert names(run(ruleset(text), raw)) == names(run(ruleset(text, False), raw)) == {
        "A", "B", "C", "D"}


HEADER_RULES = "".join([
    "header S1 Subject =~ /\\bfree\\b/i\n", "header S2 Subject =~ /^re:/i\n",
    "header S3 Subject !~ /meeting/\n", "header S4 Subject =~ /[A-Z]{5}/\n",
    "header S5 Subject =~ /\\$\\d+/\n", "header S6 exists:Subject\n",
    "header F1 From =~ /example\\.org/\n", "header F2 From:addr =~ /^alice@/\n",
    "header M1 X-Mailer =~ /outlook/i [if-unset: none]\n",
    "header M2 X-Mailer =~ /none/\n", "header M3 X-Mailer =~ /mutt/i\n",
    "header M4 X-Mailer !~ /./\n", "header M5 X-Mailer =~ /^$/\n",
])


@pytest.mark.parametrize("use_hyperscan", [True, False])
@pytest.mark.parametrize("subject", ["FREE money $100", "Re: the meeting", "", "hello"])
def test_header_group_prefilter_changes_nothing(use_hyperscan: bool, subject: str) -> None:
    if use_hyperscan and not hyperscan_available():
        pytest.skip("hyperscan package not installed")
    rs = ruleset(HEADER_RULES, use_hyperscan)
    assert any(g.prefilter is not None for g in rs.header_groups)
    raw = message(subject=subject)
    with_prefilter = run(rs, raw).values
    for group in rs.header_groups:
        group.prefilter = None
    assert run(rs, raw).values == with_prefilter


def _lookalike_word(word: str) -> str:
    """A SpamAssassin-style look-alike group per letter (about 250 characters each)."""
    return "".join("(?:[" + c + c.upper() + "]|" + "|".join(f"q{c}{n:02d}" for n in range(60))
                   + ")" for c in word)


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan package not installed")
def test_patterns_too_long_for_hyperscan_are_split_and_still_agree() -> None:
    from scanner.rules.perlre import translate
    from scanner.rules.prefilter import MAX_HS_LONG_PATTERN, split_long

    words = ["password", "webcamera", "bitcoinwallet", "deadline", "paymenow", "malware",
             "recorded", "contacts"]
    alternation = "(?:^|\\s)(?:" + "|".join(_lookalike_word(w) for w in words) + ")\\b"
    sequence = _lookalike_word("abcdefghijklmnopqrstuvwxyz" * 3)
    for pattern in (alternation, sequence):
        assert len(pattern) > MAX_HS_LONG_PATTERN
        parts = split_long(translate(pattern, "i"))
        assert parts and all(len(p.pcre or "") <= MAX_HS_LONG_PATTERN for p in parts)
    assert len(split_long(translate(alternation, "i")) or []) == len(words)
    text = f"body LONG_ALT /{alternation}/i\nbody LONG_SEQ /{sequence}/i\n"
    with_hs, without = ruleset(text), ruleset(text, use_hyperscan=False)
    assert not with_hs.prefilters["body"].always  # both went into Hyperscan
    for body in ("please send the PASSWORD now", "your webcamera", "password-less",
                 "abcdefghijklmnopqrstuvwxyz" * 3, "abcdefghijklm", "nothing to see"):
        raw = message(body=body + "\n")
        assert names(run(with_hs, raw)) == names(run(without, raw)), body
    assert names(run(with_hs, message(body="send the PASSWORD now\n"))) == {"LONG_ALT"}
    assert names(run(with_hs, message(body="abcdefghijklmnopqrstuvwxyz" * 3 + "\n"))) == {
        "LONG_SEQ"}


@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"From ", b"From:", b":", b" ", b"X: y"]),
                max_size=16).map(b"".join))
def test_header_part_is_the_head_of_split_header(raw: bytes) -> None:
    """The header views read header_part(), which skips converting the body."""
    from scanner.rules.headers import header_part, split_header

    assert header_part(raw) == split_header(raw)[0]


def test_views_are_built_only_for_the_rules_that_read_them() -> None:
    """The full view copies the whole message (twice, before): not built without full
    rules; body and uri views likewise."""
    from scanner.rules.uris import text_uri_regex
    from scanner.rules.views import MessageView

    raw = message(body="see http://example.com/ now\n")
    for rules, built, skipped in (
            ("header H1 Subject =~ /hello/\n", set(), {"full", "body", "uris", "rawbody"}),
            ("full F1 /example/\n", {"full"}, {"body", "uris", "rawbody"}),
            ("body B1 /see/\nuri U1 /example/\n", {"body", "uris"}, {"full", "rawbody"})):
        rs = ruleset(rules)
        view = MessageView(raw, uri_finder=text_uri_regex(rs.tlds), redirectors=rs.redirectors)
        result = evaluate(rs, view, 5.0)
        assert result.hits, rules
        assert built <= set(vars(view)) and not skipped & set(vars(view)), rules

"""Shipped rules rewritten so that crafted text cannot make them backtrack for long.

The ``regex`` module tried ``<[a-z][^>]{0,200}...`` at every length from every ``<a``
of tag soup (61 KB of ``<a style=``: 0.5-0.9 s for SC_HTML_HIDDEN_STYLE alone), and
backtracked a greedy ``[^";]*\\.(?:exe|...)`` quadratically over a long dotted file
name (256 KB: the rules' whole time budget). The new patterns must hit exactly where
the old ones hit; no timing is measured here (bench/rules/README.md has the figures).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

CF = Path(__file__).resolve().parents[2] / "scanner" / "rules" / "cf"

OLD = {  # the patterns as shipped before, split only to fit the line length
    "SC_HTML_TINY_FONT": (
        r"""<[a-z][^>]{0,200}(?:font-size\s*:\s*(?:0|1)(?:\.\d+)?\s*(?:px|pt|em)?\s*[;"']"""
        r"""|<font[^>]{0,100}size\s*=\s*["']?0)"""),
    "SC_HTML_HIDDEN_STYLE": (
        r"""<[a-z][^>]{0,200}style\s*=\s*["']?[^"'>]{0,200}(?:display\s*:\s*none"""
        r"""|visibility\s*:\s*hidden|opacity\s*:\s*0(?:\.0+)?\s*[;"'])"""),
    "__SC_ATT_ARCHIVE": (
        r"""name\s*=\s*"?[^";]*\.(?:zip|rar|7z|ace|arj|cab|gz|tgz|bz2|xz|iso|img)"""
        r""""?\s*(?:;|$)"""),
    "SC_ATTACH_DOUBLE_EXT": (
        r"""name\s*=\s*"?[^";]*\.(?:pdf|docx?|xlsx?|pptx?|jpe?g|png|gif|txt|rtf|zip|html?)"""
        r"""\s*\.(?:exe|scr|pif|com|bat|cmd|js|vbs|hta|lnk)"?"""),
}
HTML = ["<a", "<A", "<font", " ", ">", "font-size", ":", "0", "1", "px", ";", '"', "'",
        "size", "=", "style", "display", "none", "visibility", "hidden", "opacity", ".0",
        "x" * 60, "x" * 150, "\n"]
NAMES = ["name", "=", '"', ";", ".", "a", "zip", "pdf", "exe", " ", "\n", "x" * 30]


def shipped_pattern(rule: str) -> regex.Pattern[bytes]:
    """The rule's pattern as written in the shipped .cf files, compiled as the engine
    compiles rawbody and mimeheader patterns (case-insensitive, multi-line)."""
    for path in sorted(CF.glob("*.cf")):
        for line in path.read_text().splitlines():
            m = re.match(rf"\S+\s+{re.escape(rule)}\s+(?:\S+\s+=~\s+)?/(.*)/([a-z]*)$", line)
            if m:
                return regex.compile(m.group(1).encode(), regex.I | regex.M)
    raise LookupError(rule)


def old_pattern(rule: str) -> regex.Pattern[bytes]:
    return regex.compile(OLD[rule].encode(), regex.I | regex.M)


@settings(max_examples=300)
@given(st.lists(st.sampled_from(HTML), max_size=14).map("".join))
def test_html_style_rules_hit_where_they_hit(text: str) -> None:
    data = text.encode()
    for rule in ("SC_HTML_TINY_FONT", "SC_HTML_HIDDEN_STYLE"):
        assert bool(shipped_pattern(rule).search(data)) == bool(old_pattern(rule).search(data))


@settings(max_examples=300)
@given(st.lists(st.sampled_from(NAMES), max_size=14).map("".join))
def test_attachment_name_rules_hit_where_they_hit(text: str) -> None:
    data = text.encode()
    for rule in ("__SC_ATT_ARCHIVE", "SC_ATTACH_DOUBLE_EXT"):
        assert bool(shipped_pattern(rule).search(data)) == bool(old_pattern(rule).search(data))


@pytest.mark.parametrize("rule, text", [
    ("SC_HTML_TINY_FONT", b"<span style='font-size:0px;'>x</span>"),
    ("SC_HTML_HIDDEN_STYLE", b'<div style="display: none">x</div>'),
    ("__SC_ATT_ARCHIVE", b'application/zip; name="invoice.zip"'),
    ("SC_ATTACH_DOUBLE_EXT", b'application/octet-stream; name="invoice.pdf.exe"'),
])
def test_the_rewritten_rules_still_hit(rule: str, text: bytes) -> None:
    assert shipped_pattern(rule).search(text)


def test_no_greedy_name_before_an_extension_alternation() -> None:
    """``[^";]*\\.(?:...)`` (greedy) is the shape the regex module backtracked
    quadratically; the shipped rules use the lazy ``[^";]*?``."""
    shape = re.compile(r"\[\^[^\]]*\]\*\\\.\(\?:")
    for path in sorted(CF.glob("*.cf")):
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                assert not shape.search(line), line

"""The HTML renderer skips html.parser's line and column bookkeeping: same renders.

``_Renderer.updatepos`` returns the new position without counting newlines (only
``getpos()`` reads the count, and the renderer never calls it); these tests render
with the stdlib's bookkeeping put back and compare every field of the result.
"""

from __future__ import annotations

import _markupbase
from email import message_from_bytes
from email.policy import compat32
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.rules import html as html_mod
from scanner.rules.html import render

CORPORA = Path(__file__).resolve().parents[2] / "corpora"
PIECES = ["<", ">", "</", "<p>", "<br>", "<a href='http://x.example/'>", "</a>", "<!--", "-->",
          "<!DOCTYPE html>", "<![CDATA[", "]]>", "<?php", "?>", "<script>", "</script>",
          "<textarea>", "</textarea>", "<base href=http://b.example/>", "&amp;", "&#150;",
          "&nbsp;", "\n", "\r\n", " ", "text", "é", "<img src=\"a.png\"\n alt=x>", "<!x>",
          "<div\nclass=a>", "=", "\""]


def reference(text: str, monkeypatch: pytest.MonkeyPatch) -> html_mod.Rendered:
    with monkeypatch.context() as m:
        m.setattr(html_mod._Renderer, "updatepos", _markupbase.ParserBase.updatepos)
        return render(text)


@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=40).map("".join))
def test_renders_match_the_bookkeeping_parser(text: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert render(text) == reference(text, monkeypatch)


def html_parts() -> list[str]:
    """Every text/html part of the project's corpora."""
    out: list[str] = []
    for path in sorted(CORPORA.rglob("*.eml")):
        msg = message_from_bytes(path.read_bytes(), policy=compat32)
        for part in msg.walk():
            if part.get_content_type() == "text/html":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    out.append(payload.decode("utf-8", "replace"))
    return out


def test_corpus_html_renders_match_the_bookkeeping_parser(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parts = html_parts()
    assert len(parts) >= 10
    for text in parts:
        assert render(text) == reference(text, monkeypatch)

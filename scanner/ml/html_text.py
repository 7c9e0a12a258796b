"""HTML to plain text for the classifier, with regular expressions (fast, never raises).

Keeps the visible text (entities decoded), drops comments, scripts and styles, and
records what a spam filter wants from the markup itself: tag names, link targets and
image sources (``href``, ``src``, ``action``, ``background``) and ``alt`` texts.
A full HTML parser is not needed for this and costs several times more per message;
broken markup simply yields whatever text the patterns recover.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

_DROP = re.compile(
    r"<!--.*?(?:-->|$)|<(script|style|noscript|template|title)\b[^>]*>.*?(?:</\1\s*>|$)",
    re.S | re.I,
)
_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title\s*>", re.S | re.I)
_TAG = re.compile(r"<\s*(/?)\s*([a-zA-Z][a-zA-Z0-9:-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
_ATTR = re.compile(
    r"""\b(href|src|action|background|alt)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""",
    re.I,
)
_BLOCK = frozenset({
    "p", "div", "br", "tr", "td", "th", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4",
    "h5", "h6", "blockquote", "pre", "hr", "center", "section", "article", "form", "body",
})
_MAX_TAGS = 5000


@dataclass(slots=True)
class HtmlText:
    """The result of converting one HTML part."""

    text: str = ""
    tags: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    title: str = ""


def html_to_text(source: str) -> HtmlText:
    """Convert HTML to text plus tag names and URLs; tolerant of any malformed input."""
    result = HtmlText()
    title = _TITLE.search(source)
    if title:
        result.title = html.unescape(_TAG.sub(" ", title.group(1))).strip()
    body = _DROP.sub(" ", source)

    def replace(match: re.Match[str]) -> str:
        closing, name, attrs = match.groups()
        name = name.lower()
        alt = ""
        if not closing:
            if len(result.tags) < _MAX_TAGS:
                result.tags.append(name)
            if attrs:
                for attr in _ATTR.finditer(attrs):
                    value = html.unescape(attr.group(2) or attr.group(3) or attr.group(4)
                                          or "").strip()
                    if attr.group(1).lower() == "alt":
                        alt = f" {value} "
                    elif value:
                        result.urls.append(value)
        return ("\n" if name in _BLOCK else "") + alt

    result.text = html.unescape(_TAG.sub(replace, body))
    return result

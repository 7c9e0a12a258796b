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

from decoders.htmlprep import shorten_charrefs

# A tag's unquoted part never holds "<": a start tag without its ">" then fails at the
# next "<" instead of running to the end of the text, which from every "<a " of
# "<a <a <a ..." was quadratic (16 KB: 3.7 s; a 128 KB part: minutes).
_DROP = re.compile(
    r"<!--.*?(?:-->|$)|<(script|style|noscript|template|title)\b[^<>]*>.*?(?:</\1\s*>|$)",
    re.S | re.I,
)
_TITLE = re.compile(r"<title\b[^<>]*>(.*?)</title\s*>", re.S | re.I)
_TITLE_END = re.compile(r"</title\s*>", re.I)
_TAG = re.compile(r"<\s*(/?)\s*([a-zA-Z][a-zA-Z0-9:-]*)((?:[^<>\"']|\"[^\"]*\"|'[^']*')*)>")
_ATTR = re.compile(
    r"""\b(href|src|action|background|alt)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""",
    re.I,
)
_BLOCK = frozenset({
    "p", "div", "br", "tr", "td", "th", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4",
    "h5", "h6", "blockquote", "pre", "hr", "center", "section", "article", "form", "body",
})
_BLOCK_TAG = re.compile(
    r"<\s*/?\s*(?:" + "|".join(sorted(_BLOCK, key=len, reverse=True))
    + r")\b(?:[^<>\"']|\"[^\"]*\"|'[^']*')*>", re.I)
_MAX_TAGS = 5000


@dataclass(slots=True)
class HtmlText:
    """The result of converting one HTML part."""

    text: str = ""
    tags: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    title: str = ""


def _title(source: str) -> re.Match[str] | None:
    """The first ``<title>...</title>``, searched only up to the last ``</title>``: a
    ``<title>`` after it has no end, and each one used to look for it to the end."""
    last = None
    for last in _TITLE_END.finditer(source):  # noqa: B007 - the last one is wanted
        pass
    return _TITLE.search(source, 0, last.end()) if last is not None else None


def html_to_text(source: str) -> HtmlText:
    """Convert HTML to text plus tag names and URLs; tolerant of any malformed input.

    Block-level tags become line breaks and inline tags vanish (so ``F<b></b>REE``
    reads "FREE", as a mail client shows it); ``alt`` texts are appended to the text.
    """
    result = HtmlText()
    source = shorten_charrefs(source)  # html.unescape fails on a 4,300-digit reference
    title = _title(source)
    if title:
        result.title = html.unescape(_TAG.sub(" ", title.group(1))).strip()
    body = _DROP.sub(" ", source)
    alts: list[str] = []
    for closing, name, attrs in _TAG.findall(body):
        if closing:
            continue
        if len(result.tags) < _MAX_TAGS:
            result.tags.append(name.lower())
        if "=" not in attrs:
            continue
        for attr, double, single, bare in _ATTR.findall(attrs):
            value = html.unescape(double or single or bare).strip()
            if attr.lower() == "alt":
                alts.append(value)
            elif value:
                result.urls.append(value)
    text = _TAG.sub("", _BLOCK_TAG.sub("\n", body))
    if alts:
        text += "\n" + " ".join(alts)
    result.text = html.unescape(text)
    return result

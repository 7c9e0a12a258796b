"""HTML to plain text for the classifier, with regular expressions (fast, never raises).

Keeps the visible text (entities decoded), drops comments, scripts and styles, and
records what a spam filter wants from the markup itself: tag names, link targets and
image sources (``href``, ``src``, ``action``, ``background``) and ``alt`` texts.
A full HTML parser is not needed for this and costs several times more per message;
broken markup simply yields whatever text the patterns recover.
"""

from __future__ import annotations

import bisect
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from decoders.htmlprep import shorten_charrefs

_DROP = re.compile(
    r"<!--.*?(?:-->|$)|<(script|style|noscript|template|title)\b[^>]*>.*?(?:</\1\s*>|$)",
    re.S | re.I,
)
_DROP_HEAD = re.compile(r"<!--|<(?:script|style|noscript|template|title)\b", re.I)
_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title\s*>", re.S | re.I)
_TITLE_END = re.compile(r"</title\s*>", re.I)
_TAG = re.compile(r"<\s*(/?)\s*([a-zA-Z][a-zA-Z0-9:-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
_TAG_HEAD = re.compile(r"<\s*/?\s*[a-zA-Z]")
# the same without "<" outside quotes: never reads far, and where it matches, _TAG
# matches the same text (its reading takes the same steps up to the same ">")
_TAG_FAST = re.compile(r"<\s*(/?)\s*([a-zA-Z][a-zA-Z0-9:-]*)((?:[^<>\"']|\"[^\"]*\"|'[^']*')*)>")
_SPECIAL = re.compile(r"[>\"']")
_ATTR = re.compile(
    r"""\b(href|src|action|background|alt)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""",
    re.I,
)
_BLOCK = frozenset({
    "p", "div", "br", "tr", "td", "th", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4",
    "h5", "h6", "blockquote", "pre", "hr", "center", "section", "article", "form", "body",
})
_BLOCK_HEAD = r"<\s*/?\s*(?:" + "|".join(sorted(_BLOCK, key=len, reverse=True)) + r")\b"
_BLOCK_TAG = re.compile(_BLOCK_HEAD + r"(?:[^>\"']|\"[^\"]*\"|'[^']*')*>", re.I)
_BLOCK_TAG_FAST = re.compile(_BLOCK_HEAD + r"(?:[^<>\"']|\"[^\"]*\"|'[^']*')*>", re.I)
_BLOCK_TAG_HEAD = re.compile(_BLOCK_HEAD, re.I)
_MAX_TAGS = 5000


@dataclass(slots=True)
class HtmlText:
    """The result of converting one HTML part."""

    text: str = ""
    tags: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    title: str = ""


class _TagEnds:
    """Where a tag begun at each place of a text ends, found for all places at once.

    ``_TAG`` and ``_BLOCK_TAG`` read a tag's attributes as runs of plain characters and
    quoted strings up to a ``>``. Whether that succeeds depends only on the first
    ``>``, ``"`` or ``'`` after the tag's ``<``: a ``>`` ends the tag; a quote jumps to
    its closing quote and the reading goes on from the next such character; a quote
    that nothing closes fails it. Searching from every ``<a`` of ``<a <a <a ...``
    without ``>`` had read to the end of the text each time (quadratic: 16 KB took
    3.7 s, a 128 KB part minutes); here each such character is looked at once, right
    to left, and the patterns are only run where they match (so the results are the
    patterns' own).
    """

    def __init__(self, text: str) -> None:
        self.positions = [m.start() for m in _SPECIAL.finditer(text)]
        self.ends = self._ends(text, self.positions)

    @staticmethod
    def _ends(text: str, positions: list[int]) -> list[bool]:
        """For each special character: does a reading positioned there reach a ``>``?"""
        ends = [False] * (len(positions) + 1)  # the last entry: past the end, fails
        next_quote: dict[str, int] = {}  # quote -> index of its next occurrence
        for i in range(len(positions) - 1, -1, -1):
            char = text[positions[i]]
            if char == ">":
                ends[i] = True
            else:
                closing = next_quote.get(char)
                ends[i] = closing is not None and ends[closing + 1]
                next_quote[char] = i
        return ends

    def can_end(self, start: int) -> bool:
        """Can a tag that begins at ``start`` (a ``<``) reach its ``>``?"""
        return self.ends[bisect.bisect_left(self.positions, start)]


def _matches(pattern: re.Pattern[str], head: re.Pattern[str], text: str,
             can_match: Callable[[int], bool]) -> list[re.Match[str]]:
    """``list(pattern.finditer(text))`` for a pattern whose every match begins with
    ``head``, trying it only where ``can_match(start)`` says a match is possible."""
    found: list[re.Match[str]] = []
    pos = 0
    while (h := head.search(text, pos)) is not None:
        start = h.start()
        m = pattern.match(text, start) if can_match(start) else None
        if m is None:
            pos = start + 1
            continue
        found.append(m)
        pos = max(m.end(), start + 1)
    return found


def _replace(matches: list[re.Match[str]], text: str, replacement: str) -> str:
    """``text`` with each of ``matches`` (in order, not overlapping) replaced."""
    out: list[str] = []
    done = 0
    for m in matches:
        out.append(text[done : m.start()])
        out.append(replacement)
        done = m.end()
    out.append(text[done:])
    return "".join(out)


def _heads(head: re.Pattern[str], text: str) -> int:
    """How many tags begin in ``text``."""
    return len(head.findall(text))


# The fast pattern is used when every place a tag begins (``head``) begins one of its
# matches: then no tag begins between two of them, so it finds exactly what the full
# pattern finds (ordinary markup) and reads no further than it. A tag head inside a
# match (a "<" in a quoted attribute) sends the text the slow way.

def _tags(text: str) -> tuple[list[tuple[str, ...]], bool]:
    """``_TAG.findall(text)`` in linear time, and whether the fast patterns found it
    (then they also find what the full ones would substitute)."""
    found = _TAG_FAST.findall(text)
    if len(found) == _heads(_TAG_HEAD, text):
        return found, True
    return [m.groups() for m in _matches(_TAG, _TAG_HEAD, text, _TagEnds(text).can_end)], False


def _sub(pattern: re.Pattern[str], fast: re.Pattern[str], head: re.Pattern[str],
         replacement: str, text: str) -> str:
    """``pattern.sub(replacement, text)`` (a plain replacement) in linear time."""
    out, count = fast.subn(replacement, text)
    if count == _heads(head, text):
        return out
    return _replace(_matches(pattern, head, text, _TagEnds(text).can_end), text, replacement)


def _drop(source: str) -> str:
    """``_DROP.sub(" ", source)``: a script-like tag after the last ``>`` cannot end, and
    is not tried (each one had read to the end of the text)."""
    last_gt = source.rfind(">")

    def can_match(start: int) -> bool:
        return start < last_gt or source.startswith("<!--", start)

    return _replace(_matches(_DROP, _DROP_HEAD, source, can_match), source, " ")


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
        inner = title.group(1)
        result.title = html.unescape(_sub(_TAG, _TAG_FAST, _TAG_HEAD, " ", inner)).strip()
    body = _drop(source)
    tags, fast = _tags(body)
    alts: list[str] = []
    for closing, name, attrs in tags:
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
    if fast:  # every tag head begins a match: the fast patterns find what the full ones do
        text = _TAG_FAST.sub("", _BLOCK_TAG_FAST.sub("\n", body))
    else:
        blocks = _sub(_BLOCK_TAG, _BLOCK_TAG_FAST, _BLOCK_TAG_HEAD, "\n", body)
        text = _sub(_TAG, _TAG_FAST, _TAG_HEAD, "", blocks)
    if alts:
        text += "\n" + " ".join(alts)
    result.text = html.unescape(text)
    return result


"""Render HTML to the text SpamAssassin's ``body`` rules see, and collect its links.

Rendering follows SpamAssassin's rules for what is text: script and style content is
dropped, the content of ``<iframe>``, ``<textarea>`` and ``<xmp>`` is text (markup
included: HTML::Parser reads it literally), comments are dropped, entities are decoded
(``&#128;``-``&#159;`` as the C1 characters U+0080-U+009F, as HTML::Parser does),
``&nbsp;`` is a space (an NBSP written otherwise, ``&#160;`` or ``&nbsp`` without the
semicolon, stays: the body view decides), curly double quotes U+201C/U+201D are ``"``
(in attributes too); ``<br>`` and ``<div>`` give a newline; ``<li>``, ``<td>``,
``<th>``, ``<dd>``, ``<dt>``, headings and ``<embed>`` a space; ``<p>``, ``<hr>``,
``<blockquote>``, ``<pre>`` and ``<title>`` a blank line. Runs of ASCII white space
inside text become one space. Hidden text (same colour as the background, tiny fonts)
stays in, as in SpamAssassin's ``body`` view.

Links come from ``a``/``area``/``link``/``base`` ``href``, ``img``/``frame``/``iframe``/
``embed``/``script``/``bgsound`` ``src``, ``form`` ``action``, ``background`` attributes
and ``<meta http-equiv=refresh>``; the first ``<base href>`` that is an absolute
http(s)/ftp URL is kept apart too, to make relative links absolute. Anchors
(``<a href>``) are also kept with the text they show, for the link-text mismatch (see
:mod:`scanner.rules.views`). The renderer works on ``str``; callers decide how octets
map to characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from decoders.htmlprep import prepare

# html.parser spends ~2.5 us per "<" of tag soup: markup beyond the first MiB of a part
# (far beyond the body_part_scan_size of text the body rules read) is not rendered,
# which bounds a crafted part at seconds instead of tens of seconds.
MAX_HTML = 1024 * 1024
MAX_LINKS = 20000
MAX_ANCHORS = 1000
MAX_ANCHOR_TEXT = 300
_WS_NEWLINE = frozenset({"br", "div"})
# HTML::Parser's literal-mode elements besides script and style (which html.parser
# already reads so): their content is text, tags included, up to the end tag
_LITERAL = frozenset({"iframe", "textarea", "xmp"})
_WS_SPACE = frozenset({"li", "th", "td", "dd", "dt", "embed", "h1", "h2", "h3", "h4", "h5",
                       "h6"})
_WS_PARA = frozenset({"p", "hr", "blockquote", "pre", "listing", "plaintext", "xmp", "title"})
_LINK_ATTRS = {"a": ("href",), "area": ("href",), "link": ("href",), "base": ("href",),
               "img": ("src",), "frame": ("src",), "iframe": ("src",), "embed": ("src",),
               "script": ("src",), "bgsound": ("src",), "form": ("action",),
               "body": ("background",), "table": ("background",), "tr": ("background",),
               "td": ("background",)}
# SpamAssassin's text handler: ASCII white space, and "\xc2\xa0" (meant as a UTF-8 NBSP,
# but matched against characters: U+00C2 U+00A0); a lone NBSP is left to the body view
_TEXT_WS = re.compile(r"[ \t\n\r\f\x0b]+|\xc2\xa0")
_SELF_CLOSE = re.compile(r"<(\w+)\s*/>")
# &#128; to &#159;: Python's unescape reads them as Windows-1252 (HTML5), SpamAssassin's
# HTML::Parser as the code point itself (U+0080-U+009F); the rules see SpamAssassin's
_C1_REF = re.compile(r"&#(?:0*(12[89]|1[3-5]\d)|[xX]0*([89][0-9a-fA-F]))(?![0-9a-fA-F]);?")
_REFRESH_URL = re.compile(r"url\s*=\s*['\"]?([^'\">\s]+)", re.I)
# browsers ignore a <base href> that is not an absolute URL (SpamAssassin: of these)
_ABSOLUTE_BASE = re.compile(r"(?:https?|ftp):/{0,2}[^/\s]", re.I)


class _Renderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.ws: list[bool] = []
        self.skip: dict[str, int] = {"script": 0, "style": 0}
        self.links: list[str] = []
        self.anchors: list[tuple[str, str]] = []
        self._anchor: tuple[str, int] | None = None  # open <a>: href, first chunk
        self.tags = 0
        self.base = ""  # the first <base href> that is an absolute http(s)/ftp URL

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, +1)
        self.tags += 1
        if tag in _LITERAL:
            self.set_cdata_mode(tag)  # its content is text up to its end tag
        if tag == "a":
            self.close_anchor()  # <a> does not nest: a new one ends the last
            href = next((v for k, v in attrs if k == "href" and v), None)
            if href is not None and len(self.anchors) < MAX_ANCHORS:
                self._anchor = (href, len(self.chunks))
        if tag == "base" and not self.base:
            href = next((v for k, v in attrs if k == "href" and v), "").strip()
            if _ABSOLUTE_BASE.match(href):
                self.base = href
        names = _LINK_ATTRS.get(tag)
        if len(self.links) < MAX_LINKS:
            if names:
                for key, value in attrs:
                    if key in names and value is not None:
                        self.links.append(value)
            if tag == "meta":
                values = dict(attrs)
                if (values.get("http-equiv") or "").lower() == "refresh":
                    m = _REFRESH_URL.search(values.get("content") or "")
                    if m:
                        self.links.append(m.group(1))

    def updatepos(self, i: int, j: int) -> int:
        """Skip the parser's line and column bookkeeping: only ``getpos()`` reads it, and
        nothing here asks (it counted the newlines of every piece: a twelfth of the
        render time of corpus HTML)."""
        return j

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        self._tag(tag, -1)
        if tag == "a":
            self.close_anchor()

    def close_anchor(self) -> None:
        """Record the open anchor with the text shown inside it."""
        if self._anchor is not None:
            href, first = self._anchor
            self._anchor = None
            text = "".join(self.chunks[first:]).strip()[:MAX_ANCHOR_TEXT]
            self.anchors.append((href, text))

    def _tag(self, tag: str, step: int) -> None:
        if tag in self.skip:
            self.skip[tag] = max(0, self.skip[tag] + step)
        if tag in _WS_NEWLINE:
            self._whitespace("\n")
        elif tag in _WS_SPACE:
            self._whitespace(" ")
        elif tag in _WS_PARA:
            self._whitespace("\n\n")

    def _whitespace(self, text: str) -> None:
        if self.chunks and not self.ws[-1] and self.chunks[-1].endswith(" "):
            self.chunks[-1] = self.chunks[-1][:-1]
        self.chunks.append(text)
        self.ws.append(True)

    def handle_data(self, data: str) -> None:
        if self.skip["script"] or self.skip["style"]:
            return
        text = _TEXT_WS.sub(" ", data)
        if self.chunks and self.ws[-1] and text.startswith(" "):
            text = text[1:]
        self.chunks.append(text)
        self.ws.append(False)


@dataclass(frozen=True, slots=True)
class Rendered:
    """What :func:`render` found in one HTML text."""

    text: str
    links: list[str]  # link targets in document order
    tags: int
    anchors: list[tuple[str, str]] = field(default_factory=list)  # (href, text shown)
    base: str = ""  # the first absolute http(s)/ftp <base href>, "" if none


def render(html: str) -> Rendered:
    """Render ``html``: its text, link targets, tag count and anchors."""
    html = html[:MAX_HTML].replace("&nbsp;", " ")
    if "\u201c" in html or "\u201d" in html:  # curly double quotes, as SpamAssassin
        html = html.replace("\u201c", '"').replace("\u201d", '"')
    if "&#" in html:
        html = _C1_REF.sub(_c1_char, html)
    html = prepare(_SELF_CLOSE.sub(r"<\1>", html))  # no quadratic tag soup
    parser = _Renderer()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError, IndexError):  # malformed markup: keep what we have
        pass
    parser.close_anchor()
    return Rendered("".join(parser.chunks), parser.links, parser.tags, parser.anchors,
                    parser.base)


def _c1_char(m: re.Match) -> str:
    """The character of a numeric reference to U+0080-U+009F (see ``_C1_REF``)."""
    code = int(m.group(1)) if m.group(1) else int(m.group(2), 16)
    return chr(code) if 128 <= code <= 159 else m.group(0)

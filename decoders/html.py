"""HTML: text extraction for the classifier, and a decoder for embedded ``data:`` URIs.

``html_to_text()`` drops scripts, styles and tags, keeps line structure and unescapes
entities. ``HtmlDecoder`` yields the payloads of base64 ``data:`` URIs (a common way to
smuggle an executable inside an HTML attachment) as child parts.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser

from decoders.base import Child
from decoders.context import DecodeContext
from decoders.mimeutil import decode_base64
from decoders.part import Part

_BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table"})
_SKIP = frozenset({"script", "style", "head", "title"})
_DATA_URI = re.compile(
    rb"data:([\w.+/-]*)((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,([A-Za-z0-9+/=%\s]+)", re.I
)
MAX_HTML = 8 * 1024 * 1024


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif tag in _BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self.skip:
            self.skip -= 1
        elif tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML document, whitespace collapsed per line."""
    parser = _TextParser()
    try:
        parser.feed(html[:MAX_HTML])
        parser.close()
    except Exception:
        pass
    text = "".join(parser.out)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


class HtmlDecoder:
    """Extracts base64 ``data:`` URI payloads from HTML parts."""

    name = "html"
    handles = frozenset({"html"})
    order = 50

    def wants(self, part: Part) -> bool:
        return _DATA_URI.search(part.data()) is not None

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        raw = part.data()
        for n, m in enumerate(_DATA_URI.finditer(raw), 1):
            ctx.check_time()
            payload = m.group(4)
            if m.group(3):
                data = decode_base64(urllib.parse.unquote_to_bytes(payload))
            else:
                data = urllib.parse.unquote_to_bytes(payload)
            if len(data) < 16:
                continue
            mime = m.group(1).decode("ascii", "replace").lower() or None
            yield Child(blob=ctx.blob(data), name=f"data-uri-{n}", declared_type=mime)

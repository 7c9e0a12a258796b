"""The visible text of an HTML leaf, as ``Part.text`` gives it.

``html_to_text()`` drops scripts, styles and tags, keeps line structure and unescapes
entities. The rules engine and the classifier render HTML their own way; this one is
only run when something reads ``Part.text`` of an HTML leaf.
"""

from __future__ import annotations

from html.parser import HTMLParser

from decoders.htmlprep import prepare

_BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table"})
_SKIP = frozenset({"script", "style", "head", "title"})
# the same bound as the rules' renderer (whose text the URIBL host finder reads instead)
MAX_HTML = 1024 * 1024


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
        parser.feed(prepare(html[:MAX_HTML]))  # no quadratic tag soup
        parser.close()
    except Exception:
        pass
    text = "".join(parser.out)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)

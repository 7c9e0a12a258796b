"""HTML: a decoder for embedded ``data:`` URIs.

``HtmlDecoder`` yields the payloads of base64 ``data:`` URIs (a common way to smuggle an
executable inside an HTML attachment) as child parts. The visible text of HTML leaves
(``Part.text``) comes from :mod:`decoders.html_text`.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator

from decoders.base import Child
from decoders.context import DecodeContext
from decoders.mimeutil import decode_base64
from decoders.part import Part

_DATA_URI = re.compile(
    rb"data:([\w.+/-]*)((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,([A-Za-z0-9+/=%\s]+)", re.I
)


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

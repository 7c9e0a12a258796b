"""TNEF (``winmail.dat``) via ``tnefparse``: yields the attachments with their long names.

TNEF stores attachments uncompressed, so the output can't exceed the input; the bytes
still go through the counted writer.
"""

from __future__ import annotations

from collections.abc import Iterator

from decoders.base import Child, CorruptPart
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name
from decoders.part import Part


def _name(attachment: object) -> str | None:
    # tnefparse decodes names as UTF-8 inside its properties (UnicodeDecodeError on
    # anything else), so every read is guarded and the raw bytes are the last resort
    for getter in ("long_filename", "name", "_name"):
        try:
            value = getattr(attachment, getter, None)
            value = value() if callable(value) else value
        except Exception:
            value = None
        if isinstance(value, bytes):
            value = value.decode("latin-1", "replace")
        if isinstance(value, str) and value.strip("\0 "):
            return clean_name(value.strip("\0 "))
    return None


class TnefDecoder:
    """Extracts attachments from MS-TNEF containers."""

    name = "tnef"
    handles = frozenset({"tnef"})
    order = 45

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        import tnefparse

        try:
            tnef = tnefparse.TNEF(part.data())
        except Exception as exc:
            raise CorruptPart(f"tnef: {type(exc).__name__}: {exc}"[:200]) from exc
        for attachment in tnef.attachments:
            ctx.check_time()
            data = getattr(attachment, "data", b"") or b""
            if isinstance(data, bytes):
                yield Child(blob=ctx.blob(data), name=_name(attachment))
        body = getattr(tnef, "htmlbody", None) or getattr(tnef, "body", None)
        if isinstance(body, bytes | str) and body:
            raw = body.encode("utf-8", "replace") if isinstance(body, str) else body
            yield Child(blob=ctx.blob(raw), name="tnef-body")

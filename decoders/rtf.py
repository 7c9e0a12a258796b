"""RTF: embedded objects (``\\objdata``) via oletools' ``rtfobj``.

OLE "Package" objects yield the packaged file under its original name; other OLE
objects yield the embedded OLE file; non-OLE object data is yielded raw.
"""

from __future__ import annotations

from collections.abc import Iterator

from decoders.base import Child, CorruptPart
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name
from decoders.part import Part

MAX_RTF = 64 * 1024 * 1024


class RtfDecoder:
    """Extracts objects embedded in RTF documents."""

    name = "rtf"
    handles = frozenset({"rtf"})
    order = 50

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        from oletools.rtfobj import RtfObjParser

        if part.size > MAX_RTF:
            return
        parser = RtfObjParser(part.data())
        try:
            parser.parse()
        except Exception as exc:
            raise CorruptPart(f"rtf: {type(exc).__name__}: {exc}"[:200]) from exc
        for n, obj in enumerate(parser.objects, 1):
            ctx.check_time()
            if getattr(obj, "is_package", False) and obj.olepkgdata:
                name = clean_name(obj.filename or None)
                yield Child(blob=ctx.blob(obj.olepkgdata), name=name)
            elif getattr(obj, "is_ole", False) and obj.oledata:
                yield Child(blob=ctx.blob(obj.oledata), name=f"rtf-object-{n}")
            elif obj.rawdata:
                yield Child(blob=ctx.blob(obj.rawdata), name=f"rtf-object-{n}")

"""OLE2 compound files (doc, xls, ppt, msg, msi...) via ``olefile`` and ``oletools``.

Yields embedded objects: ``Ole10Native`` payloads (the "Package" wrapper that carries
an arbitrary file with its original name), ``Package``/``CONTENTS`` streams of embedded
objects, and PowerPoint's compressed ``ExOleObjStg`` records (each an OLE file itself).
Flags the part ``macro`` when olevba finds macros and ``encrypted`` when it is
password protected.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

from decoders.base import Child, CorruptPart, LimitExceeded
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name
from decoders.office import has_macros, ole_encrypted
from decoders.part import Part

EX_OLE_OBJ_STG = 0x1011
OBJECT_STREAMS = frozenset({"package", "contents"})


def _native(data: bytes) -> tuple[str | None, bytes] | None:
    try:
        from oletools.oleobj import OleNativeStream

        native = OleNativeStream(data)
    except Exception:
        return None
    payload = native.data
    if not isinstance(payload, bytes):
        return None
    name = native.filename or native.src_path
    return clean_name(name if isinstance(name, str) else None), payload


def _ppt_objects(stream: bytes, ctx: DecodeContext) -> Iterator[bytes]:
    """Decompressed ExOleObjStg records of a 'PowerPoint Document' stream."""
    pos = 0
    while pos + 8 <= len(stream):
        ver_inst, rtype, length = struct.unpack_from("<HHI", stream, pos)
        if rtype == EX_OLE_OBJ_STG and length >= 4:
            body = stream[pos + 8 : pos + 8 + length]
            if ver_inst >> 4 == 1:  # compressed: 4-byte size then zlib
                out = zlib.decompressobj()
                try:
                    data = out.decompress(body[4:], ctx.remaining + 1)
                except zlib.error as exc:
                    raise CorruptPart(f"ole: damaged PowerPoint object: {exc}") from None
                if len(data) > ctx.remaining:
                    raise LimitExceeded("quota", f"{ctx.quota} bytes")
                yield data
            else:
                yield body
        pos += 8 if ver_inst & 0xF == 0xF else 8 + length


class OleDecoder:
    """Extracts embedded objects from OLE2 compound documents."""

    name = "ole"
    handles = frozenset({"ole", "doc", "xls", "ppt", "msg", "msi"})
    order = 50

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        import olefile

        data = part.data()
        if len(data) < 512 or not olefile.isOleFile(io.BytesIO(data)):
            raise CorruptPart("ole: not an OLE2 compound file")
        try:
            ole = olefile.OleFileIO(io.BytesIO(data))
        except Exception as exc:
            raise CorruptPart(f"ole: {exc}") from exc
        with ole:
            if ole_encrypted(ole):
                ctx.mark_encrypted(part, part.name)
            elif has_macros(data, part.name):
                part.flags.add("macro")
            for path in ole.listdir(streams=True, storages=False):
                ctx.check_time()
                leaf = path[-1].lower()
                if leaf in ("\x01ole10native", "ole10native"):
                    native = _native(ole.openstream(path).read())
                    if native is not None:
                        yield Child(blob=ctx.blob(native[1]), name=native[0])
                elif leaf in OBJECT_STREAMS and len(path) > 1:
                    yield Child(blob=ctx.blob(ole.openstream(path).read()), name="/".join(path))
                elif leaf == "powerpoint document":
                    stream = ole.openstream(path).read()
                    for n, obj in enumerate(_ppt_objects(stream, ctx), 1):
                        yield Child(blob=ctx.blob(obj), name=f"ExOleObjStg-{n}")

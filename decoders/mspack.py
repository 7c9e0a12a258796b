"""Microsoft CHM help files and SZDD/KWAJ ``COMPRESS.EXE`` files via ``pylibmspack``.

pylibmspack extracts to files, so extraction happens inside the message's private
temporary directory (never the system temp dir), bounded by the remaining quota; each
result is then copied through the counted writer and the extracted file removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

from decoders.base import Child, CorruptPart, LimitExceeded, Unsupported
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name
from decoders.part import Part


def _take(path: str, ctx: DecodeContext) -> Child:
    with open(path, "rb") as fh:
        blob = ctx.stream_blob(fh)
    return Child(blob=blob)


class MspackDecoder:
    """Extracts CHM members and expands SZDD/KWAJ files."""

    name = "mspack"
    handles = frozenset({"chm", "szdd", "kwaj"})
    order = 55

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        import pylibmspack

        base = ctx.spool_dir()
        if base is None:
            raise Unsupported("mspack: no private temporary directory")
        if ctx.remaining <= 0:
            raise LimitExceeded("quota", f"{ctx.quota} bytes")
        work = tempfile.mkdtemp(prefix="mspack-", dir=base)
        try:
            data = part.data()
            try:
                if part.detected_type == "chm":
                    yield from self._chm(pylibmspack.ChmArchive.from_bytes(data), work, ctx)
                    return
                cls = pylibmspack.SzddFile if part.detected_type == "szdd" else pylibmspack.KwajFile
                archive = cls.from_bytes(data)
                name = clean_name(archive.suggested_name() or None)
                out = archive.extract(work, out_name="expanded", max_size=ctx.remaining + 1)
                child = _take(out, ctx)
                child.name = name
                yield child
            except pylibmspack.MspackError as exc:
                if "max_size" in str(exc) or "exceeds" in str(exc):
                    raise LimitExceeded("quota", f"{ctx.quota} bytes") from exc
                raise CorruptPart(f"mspack: {exc}"[:200]) from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _chm(archive: object, work: str, ctx: DecodeContext) -> Iterator[Child]:
        for info in archive.files(include_system=False):  # type: ignore[attr-defined]
            ctx.check_time()
            name = info["name"]
            if info["size"] <= 0 or name.startswith(("/#", "/$", "::")):
                continue
            out = archive.extract(name, work, max_size=ctx.remaining + 1)  # type: ignore[attr-defined]
            child = _take(out, ctx)
            os.unlink(out)
            child.name = clean_name(name.lstrip("/"))
            yield child

"""tar archives (ustar, GNU, pax) via :mod:`tarfile`; compressed tars arrive here after
the ``compress`` decoder has produced the inner ``.tar`` part.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

from decoders.base import Child, CorruptPart
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name
from decoders.part import Part


class TarDecoder:
    """Extracts the regular files of a tar archive."""

    name = "tar"
    handles = frozenset({"tar"})
    order = 35

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        with part.open() as fh:
            try:
                archive = tarfile.open(fileobj=fh, mode="r:")  # noqa: SIM115 - closed below
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise CorruptPart(f"tar: {exc}") from exc
            with archive:
                try:
                    for info in archive:
                        ctx.check_time()
                        if not info.isfile():
                            continue
                        src = archive.extractfile(info)
                        if src is None:
                            continue
                        with src:
                            blob = ctx.stream_blob(src)
                        yield Child(blob=blob, name=clean_name(info.name))
                except (tarfile.TarError, OSError, EOFError) as exc:
                    raise CorruptPart(f"tar: {exc}") from exc

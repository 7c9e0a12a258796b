"""tar archives (ustar, GNU, pax) via :mod:`tarfile`; compressed tars arrive here after
the ``compress`` decoder has produced the inner ``.tar`` part. A member cut short (a
truncated archive) keeps the bytes that were there and the archive is reported corrupt.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from decoders.base import Child, CorruptPart
from decoders.context import CHUNK, BlobWriter, DecodeContext
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
                        if not _holds_a_file(info):
                            continue
                        src = archive.extractfile(info)
                        if src is None:
                            continue
                        with src:
                            child, problem = _member(src, fh, info, ctx)
                        yield child
                        if problem is not None:
                            raise CorruptPart(problem)
                except (tarfile.TarError, OSError, EOFError) as exc:
                    raise CorruptPart(f"tar: {exc}") from exc


def _holds_a_file(info: tarfile.TarInfo) -> bool:
    """A regular member, or one of a type this reader does not know: GNU tar and
    libarchive (which Windows uses) extract those as normal files, so their data is
    decoded like a file's (skipping them hid a ``setup.exe`` typed ``Q``)."""
    return info.isfile() or info.type not in tarfile.SUPPORTED_TYPES


def _rest_of(fh: BinaryIO, info: tarfile.TarInfo, ctx: DecodeContext) -> BlobWriter:
    """What is left of a member's data in the file (tarfile reads nothing of a member
    that is cut short)."""
    writer = ctx.writer()
    try:
        fh.seek(info.offset_data)
        left = info.size
        while left > 0:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            writer.write(chunk)
    except OSError:
        pass
    except BaseException:
        writer.discard()
        raise
    return writer


def _member(src: BinaryIO, fh: BinaryIO, info: tarfile.TarInfo,
            ctx: DecodeContext) -> tuple[Child, str | None]:
    """The member's bytes; a member cut short (a truncated archive) keeps what was
    there, flagged ``corrupt``, and comes with the reason."""
    writer = ctx.writer()
    problem = None
    try:
        writer.copy_from(src)
    except (tarfile.TarError, OSError, EOFError) as exc:
        problem = f"tar: {info.name}: {exc}"
        writer.discard()
        writer = _rest_of(fh, info, ctx)
    except BaseException:
        writer.discard()
        raise
    child = Child(blob=writer.finish(), name=clean_name(info.name))
    if problem is not None:
        child.flags.add("corrupt")
    return child, problem

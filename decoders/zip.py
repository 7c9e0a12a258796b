"""ZIP (and zip-based OOXML/ODF/JAR) via :mod:`zipfile`, deflate64 via ``inflate64``.

Members are streamed through the counted writer, so sizes claimed by the headers are
never trusted. Encrypted members (traditional PKWARE or AES) are not extracted: the
part is flagged ``encrypted``. Deflate64 members are inflated from their raw data with
``inflate64``, imploded ones (method 6) with our own :mod:`decoders.implode`; other
unsupported methods (shrink, reduce, ...) are reported and skipped. A damaged member
(bad CRC, lying sizes, truncated data) still yields what could be read, under its name,
and the zip is reported corrupt; a local header naming a member differently from the
central directory gives the part an alias. A zip whose central directory is
unreadable is retried with libarchive's streaming reader.
An OOXML file with a VBA project gets the ``macro`` flag.
"""

from __future__ import annotations

import copy
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from decoders.base import Child, CorruptPart, Unsupported
from decoders.context import BlobWriter, DecodeContext
from decoders.filetype_tables import ZIP_FAMILY
from decoders.mimeutil import clean_name
from decoders.part import Part

DEFLATE64 = 9
IMPLODE = 6
AES = 99
IN_CHUNK = 16 * 1024
READ_CHUNK = 64 * 1024
MAX_IMPLODED = 16 * 1024 * 1024


def _seek_data(fh: BinaryIO, info: zipfile.ZipInfo) -> None:
    """Position ``fh`` at the member's compressed data (after its local header)."""
    if info.header_offset < 0:
        raise CorruptPart(f"{info.filename}: local header offset before the archive")
    fh.seek(info.header_offset)
    head = fh.read(30)
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        raise CorruptPart(f"{info.filename}: bad local header")
    nlen, xlen = struct.unpack("<HH", head[26:30])
    fh.seek(info.header_offset + 30 + nlen + xlen)


def _raw_implode(fh: BinaryIO, info: zipfile.ZipInfo, ctx: DecodeContext) -> Child:
    from decoders.implode import explode

    if info.compress_size > MAX_IMPLODED:
        raise Unsupported(f"{info.filename}: imploded member too large")
    _seek_data(fh, info)
    data = fh.read(info.compress_size)
    writer = ctx.writer()
    crc = 0

    def emit(chunk: bytes) -> None:
        nonlocal crc
        crc = zlib.crc32(chunk, crc)
        writer.write(chunk)

    try:
        explode(data, info.flag_bits, info.file_size, emit)
    except BaseException:
        writer.discard()
        raise
    blob = writer.finish()
    if crc != info.CRC:
        raise CorruptPart(f"{info.filename}: CRC mismatch")
    return Child(blob=blob, name=clean_name(info.filename))


def _raw_deflate64(fh: BinaryIO, info: zipfile.ZipInfo, ctx: DecodeContext) -> Child:
    import inflate64

    _seek_data(fh, info)
    left = info.compress_size
    inflater = inflate64.Inflater()
    writer = ctx.writer()
    crc = 0
    try:
        while left > 0:
            chunk = fh.read(min(IN_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            try:
                out = inflater.inflate(chunk)
            except ValueError as exc:  # inflate64's "error code is -3": a corrupt stream
                raise CorruptPart(f"{info.filename}: deflate64: {exc}") from exc
            crc = zlib.crc32(out, crc)
            writer.write(out)
    except BaseException:
        writer.discard()
        raise
    blob = writer.finish()
    if crc != info.CRC:
        raise CorruptPart(f"{info.filename}: CRC mismatch")
    return Child(blob=blob, name=clean_name(info.filename))


def _local_name(fh: BinaryIO, info: zipfile.ZipInfo) -> str | None:
    """The member's name as its local header gives it (decoded as zipfile does)."""
    try:
        fh.seek(info.header_offset)
        head = fh.read(30)
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            return None
        raw = fh.read(struct.unpack("<H", head[26:28])[0])
    except (OSError, ValueError):
        return None
    return raw.decode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")


def _is_empty_directory(info: zipfile.ZipInfo) -> bool:
    """A directory entry: a name ending in ``/`` and nothing stored under it.

    Not ``ZipInfo.is_dir()``, which fails on an empty name. An entry named like a
    directory that holds data (``setup.exe/``) is decoded as a member: extractors
    differ in what they make of it, and skipping it hid its bytes from the checks.
    (An empty deflate stream takes 2 bytes.)
    """
    return info.filename.endswith("/") and info.file_size == 0 and info.compress_size <= 2


def _member(zf: zipfile.ZipFile, fh: BinaryIO, info: zipfile.ZipInfo,
            ctx: DecodeContext) -> tuple[Child, str | None]:
    """The member and, when it is damaged, what is wrong with it.

    A damaged member still yields what it produced, under its name, flagged ``corrupt``:
    7-Zip and unzip keep a file whose CRC or size is wrong, so its bytes and its name
    must reach the checks. A deflated member whose declared size or CRC lies is
    inflated again from its raw data to the end of its stream. A local header that
    names the member differently from the central directory (readers that stream the
    archive see that name) gives the part an alias.
    """
    aliases: tuple[str, ...] = ()
    local = _local_name(fh, info)
    if local is not None and local != info.orig_filename:
        renamed = copy.copy(info)
        renamed.orig_filename = local
        aliases = tuple(n for n in (clean_name(local),) if n)
        info = renamed
    writer = ctx.writer()
    problem = None
    try:
        with zf.open(info) as src:
            while True:
                data = src.read(READ_CHUNK)
                if not data:
                    break
                writer.write(data)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        # ValueError: a central directory whose offsets point before the file start
        problem = f"{info.filename}: {exc}"
    except BaseException:
        writer.discard()
        raise
    if problem is not None and info.compress_type == zipfile.ZIP_DEFLATED:
        writer = _reinflate(fh, info, ctx, writer)
    # a "directory" holding data is read as a file under its name without the slash
    child = Child(blob=writer.finish(), name=clean_name(info.filename.rstrip("/")),
                  aliases=aliases)
    if problem is not None:
        child.flags.add("corrupt")
    return child, problem


def _reinflate(fh: BinaryIO, info: zipfile.ZipInfo, ctx: DecodeContext,
               partial: BlobWriter) -> BlobWriter:
    """Inflate a damaged member from its raw data, ignoring its sizes and CRC; keep
    ``partial`` (what zipfile produced) when that gives no more."""
    writer = ctx.writer()
    try:
        _seek_data(fh, info)
        inflater = zlib.decompressobj(-15)
        while not inflater.eof:
            chunk = inflater.unconsumed_tail or fh.read(IN_CHUNK)
            if not chunk:
                break
            writer.write(inflater.decompress(chunk, READ_CHUNK))
    except (CorruptPart, zlib.error, OSError, ValueError):
        pass
    except BaseException:
        writer.discard()
        partial.discard()
        raise
    if writer.size > partial.size:
        partial.discard()
        return writer
    writer.discard()
    return partial


class ZipDecoder:
    """Extracts the members of zip archives and zip-based documents."""

    name = "zip"
    handles = ZIP_FAMILY
    order = 20

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        if part.detected_type in ("docm", "xlsm", "pptm"):
            part.flags.add("macro")
        problems: list[str] = []
        unsupported: list[str] = []
        with part.open() as fh:
            try:
                zf = zipfile.ZipFile(fh)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
                from decoders.archive import LibarchiveDecoder

                found = 0
                for child in LibarchiveDecoder().decode(part, ctx):
                    found += 1
                    yield child
                if found or "encrypted" in part.flags:
                    return
                raise CorruptPart(f"zip: {exc}") from exc
            with zf:
                for info in zf.infolist():
                    ctx.check_time()
                    if _is_empty_directory(info):
                        continue
                    if info.flag_bits & 0x1 or info.compress_type == AES:
                        named = ctx.name_only(part, clean_name(info.filename))
                        if named is not None:
                            yield named
                        continue
                    try:
                        if info.compress_type == DEFLATE64:
                            yield _raw_deflate64(fh, info, ctx)
                        elif info.compress_type == IMPLODE:
                            yield _raw_implode(fh, info, ctx)
                        else:
                            child, problem = _member(zf, fh, info, ctx)
                            if problem is not None:
                                problems.append(problem)
                            yield child
                    except (NotImplementedError, Unsupported) as exc:
                        unsupported.append(f"{info.filename}: {exc}")
                    except CorruptPart as exc:
                        problems.append(str(exc))
        if problems:
            raise CorruptPart("; ".join(problems + unsupported)[:200])
        if unsupported:
            raise Unsupported("; ".join(unsupported)[:200])

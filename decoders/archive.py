"""Archives read through libarchive (``libarchive-c`` over Debian's libarchive13).

Covers rar (v4 and v5), cab, iso9660, cpio (binary both endians, odc, newc), ar/deb,
rpm, lha/lzh, xar, .Z, and serves as the fallback reader for 7z and damaged zips.
Entries are streamed block by block through the counted writer. Encrypted entries (or
archives whose headers are encrypted) flag the part ``encrypted``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from decoders.base import Child, CorruptPart
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name
from decoders.part import Part

MEMORY_READ = 64 * 1024 * 1024  # self-extractor detection needs the data in one buffer
HANDLES = frozenset({"rar", "cab", "iso", "cpio", "ar", "deb", "rpm", "lha", "xar", "Z"})


def _is_encrypted_fn() -> Any:
    from libarchive import ffi

    fn = getattr(ffi, "_scanner_entry_is_encrypted", None)
    if fn is None:
        fn = ffi.libarchive.archive_entry_is_encrypted
        fn.argtypes = [ctypes.c_void_p]
        fn.restype = ctypes.c_int
        ffi._scanner_entry_is_encrypted = fn  # cache the prototype on the ffi module
    return fn


def _reader(part: Part, fmt: str) -> AbstractContextManager[Any]:
    import libarchive

    if part.spooled_path is not None and part.size > MEMORY_READ:
        return libarchive.file_reader(part.spooled_path, format_name=fmt)
    return libarchive.memory_reader(part.data(), format_name=fmt)


# directory, symlink, character and block device, fifo, socket (archive_entry.h AE_IF*)
_NOT_FILES = frozenset({0o040000, 0o120000, 0o020000, 0o060000, 0o010000, 0o140000})


def _carries_file(entry: Any) -> bool:
    """Whether an entry is decoded: a regular file, an entry whose type no format
    defines (a cpio or rar header carries the mode bits as written, and libarchive's
    extractors, bsdtar and Windows Explorer among them, write such an entry as a
    regular file), or any entry that stores data, whatever its type says. Directories,
    links and devices without data are skipped (also one whose size says data but
    whose read gives none: an ISO 9660 directory's size is its directory record's)."""
    return entry.filetype not in _NOT_FILES or (entry.size or 0) > 0


def _encrypted_error(text: str) -> bool:
    text = text.lower()
    return "encrypt" in text or "passphrase" in text or "password" in text


class LibarchiveDecoder:
    """Extracts entries of the archive formats libarchive reads."""

    name = "libarchive"
    handles = HANDLES
    order = 30

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        import libarchive

        fmt = "raw" if part.detected_type == "Z" else "all"
        is_encrypted = _is_encrypted_fn()
        try:
            with _reader(part, fmt) as archive:
                for entry in archive:
                    ctx.check_time()
                    if not _carries_file(entry):
                        continue
                    # a "directory" holding data is read as a file: its name without "/"
                    # (the path is bytes when libarchive cannot decode it)
                    name = clean_name(entry.pathname)
                    name = name.rstrip("/") or None if name else None
                    if is_encrypted(entry._entry_p) > 0:
                        named = ctx.name_only(part, name)
                        if named is not None:
                            yield named
                        continue
                    writer = ctx.writer()
                    try:
                        for block in entry.get_blocks():
                            writer.write(block)
                    except libarchive.ArchiveError as exc:
                        writer.discard()
                        if _encrypted_error(str(exc)):
                            named = ctx.name_only(part, name)
                            if named is not None:
                                yield named
                            continue
                        raise
                    except BaseException:
                        writer.discard()
                        raise
                    if entry.filetype in _NOT_FILES and writer.size == 0:
                        writer.discard()  # a directory whose size is its own record
                        continue          # (an ISO's directories): nothing was stored
                    if fmt == "raw":
                        name = _strip_z(part.name)
                    yield Child(blob=writer.finish(), name=name)
        except libarchive.ArchiveError as exc:
            if _encrypted_error(str(exc)):
                ctx.mark_encrypted(part, part.name)
                return
            raise CorruptPart(f"libarchive: {str(exc)[:160]}") from exc


def _strip_z(name: str | None) -> str | None:
    if name and name.lower().endswith(".z"):
        return name[:-2]
    return None

"""7-Zip archives: ``py7zr`` reads the headers (encryption), libarchive streams the data.

py7zr decompresses whole blocks of up to 128 MB at once, which a bomb can abuse, so
members are extracted with libarchive's block-streaming reader through the counted
writer. py7zr is used first to see whether the archive (headers or members) is
encrypted; such a part is not extracted and is flagged ``encrypted``; when only the
data is encrypted, its members' names still come out as empty parts (banned names
apply to them).
"""

from __future__ import annotations

from collections.abc import Iterator

from decoders.archive import LibarchiveDecoder
from decoders.base import Child
from decoders.context import DecodeContext
from decoders.mimeutil import clean_name
from decoders.part import Part


def _encrypted_members(part: Part) -> tuple[list[str], bool] | None:
    """(names of the encrypted archive's members, whether those are readable), ``([],
    True)`` when nothing is encrypted, or None when py7zr can't read the headers."""
    import py7zr
    from py7zr.exceptions import PasswordRequired

    try:
        with part.open() as fh, py7zr.SevenZipFile(fh, mode="r") as archive:
            if not archive.needs_password():
                return [], True
            names = [info.filename for info in archive.list() if not info.is_directory]
            return (names, True) if names else ([part.name or "?"], False)
    except PasswordRequired:  # encrypted headers: not even the names are readable
        return [part.name or "(encrypted headers)"], False
    except Exception:
        return None


class SevenZipDecoder:
    """Extracts 7z archives."""

    name = "7z"
    handles = frozenset({"7z"})
    order = 25

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        encrypted = _encrypted_members(part)
        if encrypted and encrypted[0]:
            names, readable = encrypted
            ctx.mark_encrypted(part, None)
            if not readable:
                ctx.encrypted_names.extend(names)
                return
            for name in names:
                named = ctx.name_only(part, clean_name(name))
                if named is not None:
                    yield named
            return
        yield from LibarchiveDecoder().decode(part, ctx)

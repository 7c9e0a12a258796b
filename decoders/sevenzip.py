"""7-Zip archives: ``py7zr`` reads the headers (encryption), libarchive streams the data.

py7zr decompresses whole blocks of up to 128 MB at once, which a bomb can abuse, so
members are extracted with libarchive's block-streaming reader through the counted
writer. py7zr is used first to see whether the archive (headers or members) is
encrypted; such a part is not extracted and is flagged ``encrypted``.
"""

from __future__ import annotations

from collections.abc import Iterator

from decoders.archive import LibarchiveDecoder
from decoders.base import Child
from decoders.context import DecodeContext
from decoders.part import Part


def _encrypted_members(part: Part) -> list[str] | None:
    """Names of encrypted members ([] if none), or None when py7zr can't read the headers."""
    import py7zr
    from py7zr.exceptions import PasswordRequired

    try:
        with part.open() as fh, py7zr.SevenZipFile(fh, mode="r") as archive:
            if not archive.needs_password():
                return []
            return [info.filename for info in archive.list()] or [part.name or "?"]
    except PasswordRequired:
        return [part.name or "(encrypted headers)"]
    except Exception:
        return None


class SevenZipDecoder:
    """Extracts 7z archives."""

    name = "7z"
    handles = frozenset({"7z"})
    order = 25

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        encrypted = _encrypted_members(part)
        if encrypted:
            ctx.mark_encrypted(part, None)
            ctx.encrypted_names.extend(encrypted)
            return
        yield from LibarchiveDecoder().decode(part, ctx)

"""Self-extracting archives: Windows executables that carry a zip, rar, 7z or cab payload.

libarchive finds such payloads inside a PE file. An executable without one simply
stays a leaf (no symbol): it goes to the virus scanner as it is.
"""

from __future__ import annotations

from collections.abc import Iterator

from decoders.archive import LibarchiveDecoder
from decoders.base import Child, CorruptPart
from decoders.context import DecodeContext
from decoders.part import Part

MAX_SFX = 64 * 1024 * 1024
SIGNATURES = (b"PK\x03\x04", b"Rar!\x1a\x07", b"7z\xbc\xaf\x27\x1c", b"MSCF\0\0\0\0")


class SfxDecoder:
    """Extracts the payload of self-extracting archives."""

    name = "sfx"
    handles = frozenset({"exe-ms"})
    order = 90

    def wants(self, part: Part) -> bool:
        if part.size > MAX_SFX:
            return False
        data = part.data()
        return any(sig in data for sig in SIGNATURES)

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        if part.size > MAX_SFX:
            return
        try:
            yield from LibarchiveDecoder().decode(part, ctx)
        except CorruptPart as exc:
            if "Unrecognized archive format" in str(exc) or "Truncated" in str(exc):
                return
            raise

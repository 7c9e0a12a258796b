"""Microsoft OneNote sections (.one): the files embedded in them.

Our own reader of what [MS-ONESTORE] 2.6.13 calls a FileDataStoreObject: the GUID
{BDE316E7-2665-4511-A4C4-8D4D0B7A9EAC} in its on-disk (little-endian) form, a 64-bit
length, 12 reserved bytes, the file's bytes, padding to 8 bytes and the footer GUID
{71FBA722-0F79-4A0B-BB13-899256426B24}. Every such object in the section is one child,
found by its header GUID as ClamAV (1.1+) and one-extract find them, so a damaged file
node tree hides nothing.

A child is named ``embedded-N`` plus the extension OneNote stored for it (``.hta``,
``.exe``...) when that extension can be tied to the object for certain: the
ObjectDeclarationFileData3 node's ``<ifndf>{GUID}`` reference and its extension string,
and a FileDataStoreObjectReferenceFND (file node 0x094) carrying the same GUID whose
chunk reference points exactly at the object. Otherwise its detected type names it
where Windows has an extension for that type (:data:`TYPE_EXTENSIONS`: an ``lnk``
shortcut is ``embedded-N.lnk``, so the banned names apply), else it is ``embedded-N``.

A length that runs past the section, or whose footer is not where it says, keeps the
bytes that are there up to the next object header (``corrupt`` flag; the search goes on
inside them) and makes the part ``DECODE_CORRUPT``.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Iterator

from decoders.base import Child, CorruptPart
from decoders.context import Blob, DecodeContext
from decoders.filetype import detect
from decoders.filetype_tables import ONENOTE_SECTION
from decoders.part import Part

OBJECT_HEADER = uuid.UUID("BDE316E7-2665-4511-A4C4-8D4D0B7A9EAC").bytes_le
OBJECT_FOOTER = uuid.UUID("71FBA722-0F79-4A0B-BB13-899256426B24").bytes_le
DATA_OFFSET = 16 + 8 + 4 + 8  # guidHeader, cbLength, unused, reserved
_IFNDF = "<ifndf>{".encode("utf-16-le")
_IFNDF_CHARS = len("<ifndf>{") + 36 + 1  # "<ifndf>{" GUID "}"
_EXTENSION = re.compile(r"\.[A-Za-z0-9_-]{1,16}")
# FileNodeChunkReference field sizes and scale by format ([MS-ONESTORE] 2.2.4.2)
# detected type -> the extension Windows opens such a file by (for objects whose stored
# extension could not be tied to them)
TYPE_EXTENSIONS = {"exe-ms": ".exe", "lnk": ".lnk", "msi": ".msi", "chm": ".chm",
                   "iso": ".iso", "img": ".img", "vhd": ".vhd", "vhdx": ".vhdx",
                   "zip": ".zip", "7z": ".7z", "rar": ".rar", "cab": ".cab", "jar": ".jar",
                   "html": ".html", "pdf": ".pdf", "one": ".one"}
_STP_FORMATS = {0: (8, 1), 1: (4, 1), 2: (2, 8), 3: (4, 8)}
_CB_FORMATS = {0: (4, 1), 1: (8, 1), 2: (1, 8), 3: (2, 8)}


def _declared_extensions(data: bytes, ctx: DecodeContext) -> dict[bytes, str]:
    """GUID (on-disk bytes) -> extension, from ``<ifndf>{GUID}`` strings followed by
    their extension string (both StringInStorageBuffer: a 32-bit count of UTF-16 units)."""
    found: dict[bytes, str] = {}
    pos = data.find(_IFNDF)
    seen = 0
    while pos >= 4:
        seen += 1
        if seen % 1024 == 0:
            ctx.check_time()
        end = pos + 2 * _IFNDF_CHARS
        if struct.unpack_from("<I", data, pos - 4)[0] == _IFNDF_CHARS and end + 4 <= len(data):
            text = data[pos:end].decode("utf-16-le", "replace")
            count = struct.unpack_from("<I", data, end)[0]
            ext = data[end + 4 : end + 4 + 2 * count].decode("utf-16-le", "replace")
            try:
                guid = uuid.UUID(text[8:-1]).bytes_le
            except ValueError:
                guid = b""
            if guid and text.endswith("}") and count <= 17 and _EXTENSION.fullmatch(ext):
                found[guid] = ext
        pos = data.find(_IFNDF, pos + 2)
    return found


def _reference_nodes() -> re.Pattern[bytes]:
    """Where a FileDataStoreObjectReferenceFND header may start: node id 0x094, a size
    of 23 to 36 bytes, any formats and base type, the reserved bit clear (zero-width,
    so that overlapping candidates are all tried)."""
    sizes = bytes(sorted({(4 + s + c + 16) << 2 for s, _ in _STP_FORMATS.values()
                          for c, _ in _CB_FORMATS.values()}))
    return re.compile(rb"(?=\x94[" + re.escape(sizes) + rb"][\x00\x80][\x00-\x7f])")


_REFERENCE_NODES = _reference_nodes()


def _references(data: bytes, ctx: DecodeContext) -> dict[bytes, int]:
    """GUID (on-disk bytes) -> the offset its FileDataStoreObjectReferenceFND points at;
    one pass over the section."""
    found: dict[bytes, int] = {}
    for n, m in enumerate(_REFERENCE_NODES.finditer(data)):
        if n % 4096 == 0:
            ctx.check_time()
        header = struct.unpack_from("<I", data, m.start())[0]
        stp_size, stp_scale = _STP_FORMATS[(header >> 23) & 3]
        cb_size = _CB_FORMATS[(header >> 25) & 3][0]
        guid_at = m.start() + 4 + stp_size + cb_size
        if (header >> 10) & 0x1FFF != 4 + stp_size + cb_size + 16 or guid_at + 16 > len(data):
            continue
        stp = int.from_bytes(data[m.start() + 4 : m.start() + 4 + stp_size], "little")
        found[data[guid_at : guid_at + 16]] = stp * stp_scale
    return found


def object_extensions(data: bytes, ctx: DecodeContext) -> dict[int, str]:
    """Object offset -> the extension OneNote declared for it, where certain."""
    declared = _declared_extensions(data, ctx)
    if not declared:  # nothing to tie: the one pass over the node headers is spared
        return {}
    references = _references(data, ctx)
    out: dict[int, str] = {}
    for guid, ext in declared.items():
        offset = references.get(guid)
        if offset is not None and data[offset : offset + 16] == OBJECT_HEADER:
            out[offset] = ext
    return out


def _damage(data: bytes, offset: int, length: int) -> str | None:
    """Why the object at ``offset`` claiming ``length`` bytes is damaged, or None."""
    end = offset + DATA_OFFSET + length
    if end > len(data):
        return f"object at {offset}: length {length} runs past the end ({len(data)} bytes)"
    footer = end + (-length % 8)
    if data[footer : footer + 16] != OBJECT_FOOTER:
        return f"object at {offset}: no footer after {length} bytes"
    return None


def _before_next_object(data: bytes, start: int, end: int) -> int:
    """Where a damaged object's bytes end: at the next object header before ``end``, which
    is read as an object of its own (so a section of lying lengths yields no more bytes
    than it holds)."""
    following = data.find(OBJECT_HEADER, start, end)
    return end if following < 0 else following


def _type_extension(blob: Blob) -> str:
    """The extension of ``blob``'s detected type in :data:`TYPE_EXTENSIONS`, or ``""``."""
    return TYPE_EXTENSIONS.get(detect(blob)[0], "")


class OneNoteDecoder:
    """Extracts the embedded files (FileDataStoreObjects) of OneNote sections."""

    name = "onenote"
    handles = frozenset({"one"})
    order = 55

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        data = part.data()
        if not data.startswith(ONENOTE_SECTION):
            raise CorruptPart("onenote: no OneNote section header")
        extensions = object_extensions(data, ctx)
        damage: list[str] = []
        offset = data.find(OBJECT_HEADER)
        n = 0
        while offset >= 0:
            ctx.check_time()
            if offset + DATA_OFFSET > len(data):
                damage.append(f"object at {offset}: header truncated")
                break
            n += 1
            length = struct.unpack_from("<Q", data, offset + 16)[0]
            problem = _damage(data, offset, length)
            start = offset + DATA_OFFSET
            end = min(start + length, len(data))
            flags = set()
            if problem:
                damage.append(problem)
                flags.add("corrupt")
                end = _before_next_object(data, start, end)
            blob = ctx.blob(data[start:end])
            ext = extensions.get(offset) or _type_extension(blob)
            yield Child(blob=blob, name=f"embedded-{n}{ext}", flags=flags)
            resume = end if problem is None else offset + 16
            offset = data.find(OBJECT_HEADER, resume)
        if damage:
            raise CorruptPart("onenote: " + "; ".join(damage[:3]))

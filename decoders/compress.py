"""Single-stream compressors: gzip (multi-member), bzip2, xz, lzma-alone and zstd.

Each stream is decompressed in bounded steps (``max_length``), so a 1:1,000,000 bomb
stops at the quota after producing at most one step beyond it. The child's name is the
gzip header's original name, else the parent's name without its compression suffix.
A truncated stream yields what it produced and is then reported corrupt.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

from decoders.base import Child, CorruptPart
from decoders.context import DecodeContext
from decoders.part import Part

STEP = 256 * 1024
IN_CHUNK = 64 * 1024
SUFFIXES = {
    "gz": (".tgz", ".gz", ".gzip", "-gz", ".z"),
    "bz2": (".tbz2", ".tbz", ".bz2", ".bz"),
    "xz": (".txz", ".xz"),
    "lzma": (".tlz", ".lzma"),
    "zst": (".tzst", ".zst", ".zstd"),
}
TAR_SUFFIXES = (".tgz", ".tbz2", ".tbz", ".txz", ".tlz", ".tzst")


def child_name(name: str | None, short: str) -> str | None:
    if not name:
        return None
    lower = name.lower()
    for suffix in SUFFIXES.get(short, ()):
        if lower.endswith(suffix):
            base = name[: -len(suffix)]
            return base + ".tar" if suffix in TAR_SUFFIXES else base
    return None


def gzip_name(head: bytes) -> str | None:
    """The original file name stored in a gzip header (FNAME), if any."""
    if len(head) < 10 or head[:2] != b"\x1f\x8b" or not head[3] & 0x08:
        return None
    pos = 10
    if head[3] & 0x04:
        pos += 2 + int.from_bytes(head[10:12], "little")
    end = head.find(b"\0", pos)
    if end < 0:
        return None
    return head[pos:end].decode("latin-1")[:255] or None


def inflate_gzip(src: BinaryIO) -> Iterator[bytes]:
    """All members of a gzip stream; trailing garbage after a member is ignored."""
    d = zlib.decompressobj(31)
    buf = b""
    while True:
        if not buf:
            buf = src.read(IN_CHUNK)
            if not buf:
                if not d.eof:
                    raise CorruptPart("truncated gzip stream")
                return
        try:
            out = d.decompress(buf, STEP)
        except zlib.error as exc:
            raise CorruptPart(f"gzip: {exc}") from exc
        buf = d.unconsumed_tail
        if out:
            yield out
        if d.eof:
            rest = d.unused_data or src.read(IN_CHUNK)
            if not rest.startswith(b"\x1f\x8b"):
                return
            d, buf = zlib.decompressobj(31), rest


def _bounded(
    src: BinaryIO, new: Callable[[], bz2.BZ2Decompressor | lzma.LZMADecompressor], multi: bool
) -> Iterator[bytes]:
    d = new()
    carry = b""
    while True:
        if d.eof:
            rest = d.unused_data or (src.read(IN_CHUNK) if multi else b"")
            if not multi or not rest.strip(b"\0"):
                return
            d, carry = new(), rest
        if d.needs_input:
            data = carry or src.read(IN_CHUNK)
            carry = b""
            if not data:
                raise CorruptPart("truncated stream")
        else:
            data = b""
        try:
            out = d.decompress(data, STEP)
        except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
            raise CorruptPart(str(exc)) from exc
        if out:
            yield out


def _zstd(src: BinaryIO) -> Iterator[bytes]:
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
    try:
        while True:
            out = reader.read(STEP)
            if not out:
                return
            yield out
    except zstandard.ZstdError as exc:
        raise CorruptPart(f"zstd: {exc}") from exc


def stream_for(short: str, src: BinaryIO) -> Iterator[bytes]:
    if short == "gz":
        return inflate_gzip(src)
    if short == "bz2":
        return _bounded(src, bz2.BZ2Decompressor, True)
    if short == "xz":
        return _bounded(src, lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ), True)
    if short == "lzma":
        return _bounded(src, lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE), False)
    return _zstd(src)


class CompressDecoder:
    """Decompresses gzip, bzip2, xz, lzma and zstd streams into one child."""

    name = "compress"
    handles = frozenset({"gz", "bz2", "xz", "lzma", "zst"})
    order = 40

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        short = part.detected_type or "gz"
        with part.open() as src:
            name = gzip_name(src.read(1024)) if short == "gz" else None
            src.seek(0)
            writer = ctx.writer()
            error: CorruptPart | None = None
            try:
                for chunk in stream_for(short, src):
                    writer.write(chunk)
            except CorruptPart as exc:
                error = exc
            except BaseException:
                writer.discard()
                raise
        blob = writer.finish()
        if blob.size or error is None:
            yield Child(blob=blob, name=name or child_name(part.name, short))
        if error is not None:
            raise error

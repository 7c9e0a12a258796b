"""Lenient decoding of bytes and RFC 2047 header words in any (or a wrong) charset.

Mail declares charsets that Python does not know (``x-unknown``, ``ks_c_5601-1987``
spelled oddly, ``unicode-1-1-utf-7``), or lies about them. These helpers always return
text: declared charset first, then UTF-8, then Windows-1252, never an exception.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

from decoders.mimeutil import decode_header_pieces, with_byte_order

_ALIASES = {
    "x-unknown": "",
    "unknown-8bit": "",
    "x-user-defined": "",
    "default": "",
    "us-ascii": "ascii",
    "ascii": "ascii",
    "ks_c_5601-1987": "cp949",
    "x-sjis": "shift_jis",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
}
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


@lru_cache(maxsize=256)
def normalise_charset(charset: str | None) -> str:
    """A Python codec name for a declared MIME charset, or ``""`` if it is unusable."""
    if not charset:
        return ""
    name = charset.strip().strip("\"'").lower()
    name = _ALIASES.get(name, name)
    if not name:
        return ""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return ""
    if info.name in {"utf-7", "rot-13"} or not hasattr(info, "_is_text_encoding"):
        return info.name
    if not info._is_text_encoding:  # e.g. "base64" or "zlib" used as a charset name
        return ""
    return info.name


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode ``data`` with its declared charset, falling back to UTF-8 and cp1252."""
    codec = normalise_charset(charset)
    if codec == "ascii":
        codec = ""  # "us-ascii" messages routinely carry 8-bit text
    if codec:
        try:
            return data.decode(with_byte_order(codec, data), errors="replace")
        except Exception:  # a codec may fail in ways other than UnicodeError
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def decode_header_value(value: object) -> str:
    """Decode a raw header value (with RFC 2047 encoded words) to text, never raising."""
    if value is None:
        return ""
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception:
            return ""
    if "=?" not in value:
        return _unfold(value)
    try:
        pieces = decode_header_pieces(value)  # bounded: decode_header is quadratic
    except Exception:
        return _unfold(_ENCODED_WORD.sub(" ", value))
    out: list[str] = []
    for piece, charset in pieces:
        if isinstance(piece, bytes):
            out.append(decode_bytes(piece, charset))
        else:
            out.append(piece)
    return _unfold(" ".join(s for s in out if s))


def _unfold(value: str) -> str:
    return " ".join(value.split())

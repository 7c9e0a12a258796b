"""Octets to characters as SpamAssassin 4's ``normalize_charset`` (on by default) does.

SpamAssassin 4.0 decodes every text part (and every header value with raw 8-bit
octets) to characters before its rules see it, and hands the rules UTF-8. The order of
guesses, for octets that are not all ASCII:

1. valid UTF-8, whatever the declared charset;
2. the declared charset, strictly (ISO-8859-1 read as its superset Windows-1252; none,
   US-ASCII and UTF-8 skip this step);
3. Windows-1252, strictly, when every 8-bit octet is one of its common letters or
   punctuation marks;
4. Windows-1252, an undefined octet becoming U+FFFD.

All-ASCII octets stay as they are when declared so or in an ASCII-compatible charset
(ISO-8859-*, Windows-*, UTF-8, KOI8-*, EUC-*, Big5, GBK, GB18030); in any other
(ISO-2022-JP, UTF-7, ...) they are decoded as declared. ``Encode::Detect`` (not
installed with Debian's spamassassin) is not followed.

A part labelled ``UTF-16`` is read in the order its byte-order mark gives; without
one, by :func:`decoders.mimeutil.with_byte_order` (little-endian only when its NULs say
so, else big-endian as RFC 2781 says), where SpamAssassin's ``detect_utf16`` guesses
from spaces and octet sums: the two agree on big-endian text and on ASCII-heavy
little-endian text. Deliberately unlike SpamAssassin: a ``UTF-16`` part with a BOM is
decoded (SpamAssassin skips decoding it and reads the octets as Windows-1252), and
``UTF-16BE``/``UTF-16LE`` labels are taken at their word (SpamAssassin guesses for them
too). UTF-32 parts are decoded as declared (without a BOM, Python's machine order).
"""

from __future__ import annotations

import re

from decoders.mimeutil import safe_charset, with_byte_order

_ASCII_SUPERSET = re.compile(
    r"(?:us-)?ascii|ansi[_ ]?x3\.4-(?:1986|1968)|iso646-us|iso[ -]?8859(?:-\d{1,2})?|"
    r"windows-\d{4}|utf-?8|(?:koi8|euc)-[a-z]{1,2}|big5|gbk|gb[ -]?18030(?:-20\d\d)?|"
    r"", re.I)  # the empty name last: no charset declared is US-ASCII
_W1252_NAMES = frozenset({"iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1",
                          "windows-1252", "cp1252"})
_SKIP_DECLARED = frozenset({"", "us-ascii", "ascii", "utf-8", "utf8"})
# octets of step 3: ASCII, NBSP, SHY, some punctuation and the Latin-1 letters
_W1252_COMMON = bytes(range(0x80)) + b"\xa0\xa9\xad\x82\x84\x85\x99" + \
    bytes(range(0x91, 0x98)) + bytes(range(0xc0, 0xd7)) + bytes(range(0xd8, 0xdf)) + \
    bytes(range(0xe0, 0xf7)) + bytes(range(0xf8, 0xff))


def normalize(data: bytes, charset: str) -> tuple[str, bool]:
    """``data`` (declared as ``charset``, any case) as text, never raising, and whether
    it was decoded to characters (False: ASCII octets kept as they are, which Perl
    keeps as octets)."""
    charset = charset.strip().lower()
    if data.isascii():
        if _ASCII_SUPERSET.fullmatch(charset):
            return data.decode("ascii"), False
        text = _declared(data, charset)
        return (text, True) if text is not None else (data.decode("ascii"), False)
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError:
        pass
    text = _declared(data, charset)
    if text is None and not data.translate(None, _W1252_COMMON):
        text = _strict(data, "cp1252")
    return (text if text is not None else data.decode("cp1252", "replace")), True


def _declared(data: bytes, charset: str) -> str | None:
    """``data`` decoded strictly in its declared charset, read as the decoders (and mail
    clients) read the label (:func:`decoders.mimeutil.safe_charset`: GB2312 as GB18030,
    Shift_JIS as CP932, ...; ISO-8859-1 as Windows-1252, as SpamAssassin); None when it
    does not decode, or the label is no charset (``base64``, ``zlib``, unknown)."""
    if charset in _SKIP_DECLARED:
        return None
    codec = safe_charset(charset, default="")
    if not codec:
        return None
    return _strict(data, "cp1252" if codec == "iso8859-1" else with_byte_order(codec, data))


def _strict(data: bytes, charset: str) -> str | None:
    try:
        return data.decode(charset)
    except (UnicodeError, LookupError, ValueError):
        return None


def header_utf8(value: bytes) -> bytes:
    """A header value's raw octets as SpamAssassin reads them: kept if ASCII or valid
    UTF-8, else read as Windows-1252 (RFC 6532 allows no other raw charset)."""
    if value.isascii():
        return value
    try:
        value.decode("utf-8")
        return value
    except UnicodeDecodeError:
        return value.decode("cp1252", "replace").encode("utf-8")


def encoded_word_charset(charset: str) -> str:
    """The codec SpamAssassin decodes an RFC 2047 word of ``charset`` with."""
    return "cp1252" if charset.strip().lower() in _W1252_NAMES else charset

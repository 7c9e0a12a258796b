"""Helpers for the MIME decoder: header/body split, header parsing, transfer decoding,
file-name decoding (RFC 2231 parameters and RFC 2047 encoded words) and charsets.
"""

from __future__ import annotations

import binascii
import codecs
import re
from email.header import decode_header
from email.message import Message
from email.utils import unquote
from typing import NamedTuple

from decoders.headerparse import parse_header_block
from decoders.mimeparams import preserved_params

_BLANK = re.compile(rb"\r?\n")
_SEP = re.compile(rb"\n\r?\n")
# a Content-* field line: what decides a part's type, name and encoding
_CONTENT_FIELD_LINE = re.compile(rb"(?mi)^content-[\x21-\x39\x3b-\x7e]*[ \t]*:")
# header field lines (a name, a colon; RFC 5322 obsolete syntax allows white space before
# it) and their continuation lines, up to the first line that is neither
_HEADER_LINES = re.compile(rb"(?:(?:[\x21-\x39\x3b-\x7e]+[ \t]*:|[ \t])[^\n]*(?:\n|\Z))*")
_NL = re.compile(rb"\n")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_PAD_THEN_DATA = re.compile(rb"=[^A-Za-z0-9+/]*[A-Za-z0-9+/]")  # data after padding
_PADDING = re.compile(rb"=+")
_QP_STRAY = re.compile(rb"=(?![0-9A-Fa-f]{2}|[ \t]*\r?\n)")
_QP_NOT_ESCAPE = re.compile(rb"=(?![0-9A-Fa-f]{2})")
_QP_TRAILING = re.compile(rb"[ \t]+(?=\r?\n)")
_QP_SOFT = re.compile(rb"=\r?\n")
_CTRL = re.compile(r"[\x00-\x1f\x7f]")


class Entity(Message):
    """``email.message.Message`` that parses the parameters of a header once, in linear
    time.

    The stdlib parses a header's parameters again on every ``get_param`` call (the
    charset, the name, the file name and the boundary of one part are four parses),
    at about 3 microseconds per byte of header. A part whose Content-Type carries
    kilobytes of junk parameters then cost milliseconds per call, and a message made of
    such parts seconds of analysis per megabyte. The parsed list is kept per header
    *value*, so a changed header is parsed afresh. The parse itself is
    :func:`decoders.mimeparams.preserved_params` (the stdlib's result without its
    quadratic splitting); everything else is the stdlib's.
    """

    def _get_params_preserve(self, failobj: object, header: str) -> object:
        value = self.get(header)
        if value is None:
            return failobj
        key = (header.lower(), str(value))
        cache: dict[tuple[str, str], list] = self.__dict__.setdefault("_param_cache", {})
        params = cache.get(key)
        if params is None:
            params = cache[key] = preserved_params(str(value))
        return list(params)


def split_head_body(raw: bytes | memoryview) -> tuple[bytes, memoryview]:
    """Header block and body (a zero-copy view); a leading mbox ``From`` line is dropped."""
    head, body, _ = split_header_section(raw)
    return head, body


def split_header_section(raw: bytes | memoryview) -> tuple[bytes, memoryview, bool]:
    """Header block, body (a zero-copy view) and whether readers split them differently.

    The section ends at the empty line. A line before it that is no header field
    (``hello``, an 8-bit name) ends it for Python's email, which shows that line and the
    rest as text, while Thunderbird reads every line up to the empty line as header
    fields. Without a Content-* field after it, Python's reading is taken (the body
    starts at that line: text a reader shows; a broken fold of an ordinary field such as
    a long Subject is not worth an UNCHECKED verdict); with one (a Content-Type naming
    an attachment Thunderbird offers), Thunderbird's, the line left out, and the third
    value is True (ambiguous).
    """
    view = memoryview(raw)
    if view[:5] == b"From ":
        nl = _NL.search(view)
        view = view[nl.end() :] if nl else view[:0]
    if view[:2] == b"\r\n":
        return b"", view[2:], False
    if view[:1] == b"\n":
        return b"", view[1:], False
    end = _HEADER_LINES.match(view).end()  # type: ignore[union-attr]  # matches ''
    if end >= len(view):
        return bytes(view), view[:0], False
    m = _BLANK.match(view, end)
    if m is not None:  # the empty line that ends the header section
        return bytes(view[:end]), view[m.end() :], False
    blank = _SEP.search(view, end)
    rest = bytes(view[end : blank.start() + 1]) if blank is not None else b""
    if blank is None or _CONTENT_FIELD_LINE.search(rest) is None:
        return bytes(view[:end]), view[end:], False  # Python's reading: text from here
    fields = b"".join(line for line in rest.splitlines(keepends=True)
                      if _HEADER_LINES.match(line).end() == len(line))  # type: ignore[union-attr]
    return bytes(view[:end]) + fields, view[blank.end() :], True


# a field name followed by white space before its colon (RFC 5322 obsolete syntax)
_SPACE_BEFORE_COLON = re.compile(rb"(?m)^([\x21-\x39\x3b-\x7e]+)[ \t]+:")


def parse_headers(block: bytes) -> Message:
    """A header-only :class:`email.message.Message` (lenient, never raises on junk).

    ``Content-Type : x`` (white space before the colon) is a Content-Type field, as
    Thunderbird and Postfix read it; the stdlib's parser ends the header section at such
    a line and dropped it with every field after it (an attachment's name included).
    """
    block = _SPACE_BEFORE_COLON.sub(rb"\1:", block)
    try:
        return parse_header_block(block, Entity)
    except Exception:
        return Message()


class KnownHeader(NamedTuple):
    """A message's header section as the pipeline's parse stage parsed it before
    unpacking: the bytes given to the parser (the fields and the empty line after them)
    and the :class:`Entity` made of them (the same parser and policy as
    :func:`parse_headers`)."""

    section: bytes
    message: Message


def parse_known(block: bytes, known: KnownHeader | None) -> Message:
    """:func:`parse_headers` of ``block``, or ``known``'s message when it was parsed from
    these fields followed by the empty line and none of them needs the ``Name :`` fix
    (the parser then makes the same fields, parameters and defects): the top-level
    header section is parsed once per message."""
    if known is not None and isinstance(known.message, Entity) \
            and len(known.section) == len(block) + 2 and known.section.endswith(b"\r\n") \
            and known.section.startswith(block) and _SPACE_BEFORE_COLON.search(block) is None:
        return known.message
    return parse_headers(block)


_WS = re.compile(r"\s+")


def ambiguity(msg: Message) -> str | None:
    """Why readers could split this entity differently, or None (CVE-2024-28054 class).

    Parsers disagree on which of two conflicting values counts: Python's ``email``
    and most mail clients take the first ``boundary`` parameter, MIME-tools (amavis)
    the last; the same goes for a repeated Content-Type or Content-Transfer-Encoding
    header. Content hidden behind the other reading would escape banned-file and virus
    checks, so a message like that cannot be called checked.
    """
    for name in ("content-type", "content-transfer-encoding"):
        values = msg.get_all(name) or []
        if len(values) > 1 and len({_normal(str(v)) for v in values}) > 1:
            return f"{len(values)} different {name} headers"
    try:
        params = msg.get_params(header="content-type") or []
    except Exception:  # unparsable parameters: the split itself reports the damage
        return None
    boundaries = {str(v) for k, v in params if k.strip().lower() == "boundary"}
    if len(boundaries) > 1:
        return f"{len(boundaries)} different boundary parameters"
    return None


def _normal(value: str) -> tuple[str, frozenset[str]]:
    """A header value as ``(value, {parameters})``: case, spacing, quotes, order ignored."""
    head, *params = _WS.sub(" ", value).split(";")
    cleaned = set()
    for param in params:
        key, _, val = param.partition("=")
        if key.strip():
            cleaned.add(f"{key.strip().lower()}={val.strip().strip(chr(34))}")
    return head.strip().lower(), frozenset(cleaned)


def header_list(msg: Message) -> list[tuple[str, str]]:
    """(name, value with encoded words decoded) of every field of ``msg``, decoded once
    per message object: the MIME decoder asks twice for a single-part message's fields
    (as the message and as its one body part), and with 10,000 fields each pass took
    half a second. Worked out again if fields were added or removed since."""
    fields = len(msg)
    cached = msg.__dict__.get("_header_list")
    if cached is None or cached[0] != fields:
        cached = msg.__dict__["_header_list"] = (
            fields, [(str(k), decode_words(str(v))) for k, v in msg.items()])
    return list(cached[1])


# email.header.decode_header is quadratic in the number of encoded words (it pops
# from the front of a list): a 1 MB header of them took 3 s, so only this much of a
# value is decoded and the rest is kept as it is
MAX_DECODED_HEADER = 16 * 1024


def decode_header_pieces(value: str) -> list[tuple[bytes | str, str | None]]:
    """``email.header.decode_header`` of the first ``MAX_DECODED_HEADER`` characters,
    then the rest of ``value`` as one undecoded ``str`` piece. Raises what it raises."""
    if len(value) <= MAX_DECODED_HEADER:
        return decode_header(value)
    return [*decode_header(value[:MAX_DECODED_HEADER]), (value[MAX_DECODED_HEADER:], None)]


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; undecodable pieces are kept as they are."""
    if "=?" not in value:
        return value
    try:
        out = []
        for chunk, charset in decode_header_pieces(value):
            if isinstance(chunk, bytes):
                out.append(decode_declared(chunk, charset))
            else:
                out.append(chunk)
        return "".join(out)
    except Exception:
        return value


# codecs mail clients use for a declared charset (the WHATWG Encoding Standard, which
# Thunderbird follows): supersets that read what senders really write under that label
_SUPERSETS = {
    "gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949", "shift_jis": "cp932",
    "tis-620": "cp874", "iso8859-11": "cp874",
}
# labels Python does not know that clients do
_LABELS = {"x-gbk": "gb18030", "x-sjis": "cp932", "windows-874": "cp874",
           "iso-8859-8-i": "iso8859-8"}


def safe_charset(charset: str | None, default: str = "utf-8") -> str:
    """The codec to decode a declared charset with: the client's superset where one
    exists (GB2312 declared, GBK written: its extra characters were replacement marks),
    ``default`` for an unknown name or one of Python's codecs that is no charset
    (``charset=base64``, ``zlib``, ``hex``: decoding with them raised, the part was lost
    and the message UNCHECKED, while a mail client shows the text in its default)."""
    if not charset:
        return default
    label = charset.strip().strip('"').lower()
    try:
        info = codecs.lookup(_LABELS.get(label, label))
    except (LookupError, ValueError):
        return default
    if not getattr(info, "_is_text_encoding", True):
        return default
    return _SUPERSETS.get(info.name, info.name)


_UTF16_BOMS = (codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE)


def with_byte_order(codec: str, data: bytes) -> str:
    """``codec`` to decode ``data`` with, a BOM-less UTF-16 given its byte order.

    Python's ``utf-16`` codec reads text without a byte-order mark in the machine's
    order (little-endian on x86), so big-endian text labelled ``UTF-16`` came out as
    CJK-looking garbage that hid every word and URI. RFC 2781 section 4.3 says such
    text SHOULD be read big-endian; SpamAssassin 4 (``detect_utf16``) guesses instead.
    This is a heuristic too: an ASCII character is one NUL octet and one other, the
    NUL first in big-endian, last in little-endian, so little-endian is chosen only
    when more code units have their NUL in the second (odd) octet than in the first;
    otherwise (no ASCII, as in most CJK text) big-endian, as the RFC says. With a BOM
    ``utf-16`` is kept (the mark decides and is dropped); explicit labels
    (``UTF-16BE``, ``UTF-16LE``) and every other codec are returned as they are."""
    try:
        name = codecs.lookup(codec).name
    except (LookupError, ValueError):
        return codec
    if name != "utf-16" or data[:2] in _UTF16_BOMS:
        return codec
    even = bytes(data[: len(data) // 2 * 2])
    return "utf-16-le" if even[1::2].count(0) > even[0::2].count(0) else "utf-16-be"


def decode_declared(data: bytes, charset: str | None, default: str = "utf-8") -> str:
    """``data`` decoded in its declared ``charset`` (:func:`safe_charset`, a BOM-less
    UTF-16's byte order by :func:`with_byte_order`), bad octets replaced."""
    return data.decode(with_byte_order(safe_charset(charset, default), data), "replace")


def clean_name(name: str | bytes | None) -> str | None:
    """A printable, bounded file name (control characters removed)."""
    if name is None:
        return None
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    name = _CTRL.sub("", name).strip()
    return name[:255] or None


def filename(msg: Message) -> str | None:
    """The part's file name from Content-Disposition/Content-Type (RFC 2231 and 2047)."""
    try:
        name = msg.get_filename() or msg.get_param("name")
    except Exception:
        return None
    if isinstance(name, tuple):  # an undecoded RFC 2231 triple
        charset, _, text = name
        name = decode_declared(text.encode("latin-1", "replace"), charset)
    if not isinstance(name, str):
        return None
    return clean_name(decode_words(name))


_NAME_PARAMS = frozenset({"filename", "name"})
_RAW_NAME = re.compile(r"(?i)(?:^|;)\s*(?:file)?name\*?(?:\d+\*?)?\s*=\s*(\"[^\"]*\"|[^;\s]+)")


def filenames(msg: Message) -> list[str]:
    """Every file name the entity declares, the one :func:`filename` picks first.

    Readers disagree when an entity names itself more than once: Content-Type ``name=``
    against Content-Disposition ``filename=``, ``filename=`` against ``filename*=``, a
    repeated parameter or header. A name with a NUL also counts as what a C reader sees
    (cut at the NUL). Banned-name rules must see all of them.
    """
    found: list[str] = []
    first = filename(msg)
    if first is not None:
        found.append(first)
    for header in ("content-disposition", "content-type"):
        for i, value in enumerate(msg.get_all(header) or []):
            # the first value's parameters are already parsed (and cached) on ``msg``
            for raw in _header_names(msg if i == 0 else None, header, str(value)):
                for variant in (raw, raw.split("\0", 1)[0]):
                    name = clean_name(decode_words(variant))
                    if name is not None and name not in found:
                        found.append(name)
    return found


def _header_names(msg: Message | None, header: str, value: str) -> list[str]:
    """The name/filename parameters of one header value (RFC 2231 decoded), parsed on
    ``msg`` when it holds the value first, else on its own; a value the stdlib cannot
    parse (``filename*=`` mixed with ``filename*0*=``) is read with a plain pattern."""
    if msg is None:
        msg = Entity()
        msg[header] = value
    try:  # the raw (cached) list: get_params would unquote every junk parameter too
        params = msg._get_params_preserve(None, header) or []  # type: ignore[attr-defined]
    except Exception:
        return [_unquote_2231(m.strip('"')) for m in _RAW_NAME.findall(value)]
    names = []
    for key, val in params[1:]:
        if key.strip().lower() not in _NAME_PARAMS:
            continue
        if isinstance(val, tuple):  # an undecoded RFC 2231 triple
            charset, _, text = val
            val = decode_declared(unquote(text).encode("latin-1", "replace"), charset)
        names.append(unquote(str(val)))
    return names


_RFC2231_PREFIX = re.compile(r"^[\w.-]*'[\w-]*'")


def _unquote_2231(value: str) -> str:
    """``utf-8''a%2Ejs`` -> ``a.js``; other values unchanged."""
    m = _RFC2231_PREFIX.match(value)
    if m is None:
        return value
    from urllib.parse import unquote

    return unquote(value[m.end() :], errors="replace")


# the leading type/subtype of a Content-Type value (RFC 2045 tokens)
_TYPE_TOKEN = re.compile(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+)")


def leading_type(value: str) -> str | None:
    """The leading ``type/subtype`` token of a Content-Type value, lower case, or None
    (``TEXT/PLAIN charset=US-ASCII`` without a semicolon is ``text/plain``)."""
    m = _TYPE_TOKEN.match(value)
    return m.group(1).lower() if m is not None else None


def content_type(msg: Message) -> str | None:
    """The declared ``type/subtype`` (lower case), None without a Content-Type.

    Only the leading token counts, as in Thunderbird: ``TEXT/PLAIN charset=US-ASCII``
    (no semicolon) is ``text/plain``, where the stdlib returns the whole value and the
    part's text went unread. A value without a type/subtype is the stdlib's default.
    """
    value = msg.get("content-type")
    if value is None:
        return None
    leading = leading_type(str(value))
    if leading is not None:
        return leading
    try:
        return msg.get_content_type()
    except Exception:
        return None


def decode_base64(body: bytes | memoryview) -> bytes:
    """Decode a base64 body leniently: junk characters are skipped, missing padding
    is added, and padding in the middle does not end the data.

    ``binascii`` stops at the first padding, so a body made of separately encoded
    pieces (``TQ==`` then the rest of an executable) decoded to its first piece
    alone, while readers that go on past the padding got the whole file (clamd's
    whole-message scan missed it too). The pieces are decoded one after the other.
    """
    if _PAD_THEN_DATA.search(body) is not None:
        return b"".join(_b64_piece(p) for p in _PADDING.split(bytes(body)))
    try:  # the common case: clean base64, decoded without extra copies
        return binascii.a2b_base64(body)
    except (binascii.Error, ValueError):
        pass
    return _b64_piece(bytes(body))


def _b64_piece(piece: bytes) -> bytes:
    """One run of base64 without padding inside: junk dropped, padding made right."""
    data = _B64_JUNK.sub(b"", piece.split(b"=", 1)[0])
    data = data[: len(data) - len(data) % 4] if len(data) % 4 == 1 else data
    data += b"=" * (-len(data) % 4)
    try:
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError):
        return b""


_CTE_COMMENT = re.compile(r"\([^()]*\)")


def transfer_encoding(value: str) -> str:
    """A Content-Transfer-Encoding value as a token: comments (RFC 2045 allows them),
    quotes, spacing and case removed, so ``"base64"`` and ``base64 (x)`` are ``base64``."""
    return _CTE_COMMENT.sub("", value).replace('"', "").strip().lower()


def decode_qp(body: bytes | memoryview) -> bytes:
    """Quoted-printable decoded; an ``=`` that starts neither an ``=XX`` escape nor a
    soft line break stays as it is (RFC 2045 6.7, note 1; SpamAssassin and most mail
    readers): ``binascii.a2b_qp`` drops or keeps such ``=`` and the escapes after them
    inconsistently (``==3D`` stayed ``==3D``, ``====`` became ``==``)."""
    data = bytes(body)
    if _QP_STRAY.search(data) is not None:
        # SpamAssassin's order: trailing blanks, then soft line breaks ("version==\n3D5"
        # is "version=5"), then each stray "=" written as the escape of itself
        data = _QP_SOFT.sub(b"", _QP_TRAILING.sub(b"", data))
        data = _QP_NOT_ESCAPE.sub(b"=3D", data)  # soft breaks are gone: "=" LF is text
    return binascii.a2b_qp(data)


def decode_transfer(body: bytes | memoryview, cte: str) -> bytes | memoryview:
    """Undo the Content-Transfer-Encoding (base64, quoted-printable, uuencode)."""
    cte = transfer_encoding(cte)
    if cte == "base64":
        return decode_base64(body)
    if cte == "quoted-printable":
        try:
            return decode_qp(body)
        except (binascii.Error, ValueError):
            return body
    if cte in ("x-uuencode", "uuencode", "x-uue", "uue"):
        from decoders.uue import uudecode_all

        found = uudecode_all(bytes(body))
        return found[0][1] if found else body
    return body


def to_text(data: bytes | memoryview, charset: str | None, limit: int = 1024 * 1024) -> str:
    return decode_declared(bytes(data[:limit]), charset)

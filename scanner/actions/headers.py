"""Edits of the header section on raw bytes: add headers, prefix the Subject, leave out
header fields (forged Authentication-Results).

The body and every other existing header byte stay as they were; only the lines we add,
the fields we leave out or the Subject value we prefix change.
"""

from __future__ import annotations

import base64
import re

from scanner.headerfields import line_end, named
from scanner.rules.headers import decode_value

# where a field found by headerfields.named (every Subject field, the obsolete
# "Subject :" form too) has its value: past its name, the colon and the blanks after it
_VALUE_START = re.compile(rb"[^:]*:[ \t]*")
_ENCODED_WORD_NEXT = re.compile(rb"(?:\r?\n[ \t]+)?=\?")
_WORD_OCTETS = 45  # UTF-8 octets per encoded word: 60 base64 characters, 72 in all
# UTF-8 octets per encoded word of the Subject: 48 base64 characters, 60 in all, so
# "Subject: " and one word stay within RFC 2047's 76 characters a line
_SUBJECT_WORD_OCTETS = 36
_MAX_LINE = 998  # octets in a line, CRLF not counted (RFC 5322 2.1.1)
_LONGEST_PLAIN_WORD = 900  # a longer word of a rewritten Subject goes in encoded words
# a rewritten Subject's ASCII words (controls but NUL, CR, LF included) before the
# first and after the last one that needs encoding: written as they are (amavis's
# q_encode: FWS | utext)
_PLAIN_ENDS = re.compile(r"([\x01-\x09\x0b\x0c\x0e-\x7f]*[ \t])?(.*?)"
                         r"([ \t][\x01-\x09\x0b\x0c\x0e-\x7f]*)?", re.S)


def without(raw: bytes, ranges: list[tuple[int, int]]) -> bytes:
    """``raw`` without the byte ranges (whole header fields, as the checks found them)."""
    if not ranges:
        return raw
    pieces, pos = [], 0
    for start, end in sorted(ranges):
        if start >= pos:
            pieces.append(raw[pos:start])
            pos = end
    pieces.append(raw[pos:])
    return b"".join(pieces)


def prefix_subject(raw: bytes, prefix: str, smtputf8: bool = False) -> bytes:
    """Put ``prefix`` in front of the value of every Subject field, as amavis edits
    them all; without one, add ``Subject: PREFIX`` (trailing space trimmed), ending
    like the message's lines. A prefix that is not ASCII goes in as RFC 2047 encoded
    words, so the header stays 7-bit and reads back as prefix + original text.

    As amavis, the prefix (3 characters or more) is first removed wherever the value
    already holds it, so mail that passes twice (a reply, a second filter pass) does
    not read ``***SPAM*** ***SPAM*** ...``. Written as plain text it is cut out of the
    bytes and the rest stays as it was; found only in the decoded value (inside
    encoded words, as amavis writes a tagged non-ASCII Subject, or as our own encoded
    non-ASCII tag) the field is written anew (:func:`_rewritten`). So is a value with
    raw 8-bit octets when the message is not SMTPUTF8 (``smtputf8`` False), as amavis
    encodes it: the copy we hand on then has a valid 7-bit Subject; and so is every
    value when a non-ASCII prefix does not end with white space (``[Spam] ¡``)."""
    if not prefix:
        return raw
    fields = named(raw, ("Subject",))
    if not fields:
        return b"Subject: " + _tag(prefix.rstrip(" \t"), False) + line_end(raw) + raw
    old = prefix if len(prefix) >= 3 else ""
    eol = line_end(raw)
    # an encoded tag with no space after it would touch the value's first word, and an
    # encoded word must stand apart (RFC 2047 section 5): tag and text are encoded together
    joined = not prefix.isascii() and not prefix[-1].isspace()
    pieces, pos = [], 0
    for field in fields:
        at = _VALUE_START.match(raw, field.start).end()  # type: ignore[union-attr]
        value_end = raw.index(b":", field.start) + 1 + len(field.value)
        value = raw[at:value_end]
        if old and old.encode("utf-8") in value:  # tagged before (a second pass): not twice
            value = value.replace(old.encode("utf-8"), b"")
        pieces.append(raw[pos:field.start])
        edited = [raw[field.start:at]]
        # plain ASCII (no encoded word) reads as its bytes: only these can hold the tag
        text = _text(value) if b"=?" in value or not value.isascii() or joined else ""
        if old and old in text or joined or not smtputf8 and not value.isascii():
            space = b"" if raw[at - 1:at] in (b" ", b"\t") else b" "
            edited += [space, _rewritten(prefix + (text.replace(old, "") if old else text),
                                         eol)]
        else:
            edited += [_tag(prefix, bool(_ENCODED_WORD_NEXT.match(value))), value]
        pieces.append(_fit(b"".join(edited), eol))
        pos = value_end
    pieces.append(raw[pos:])
    return b"".join(pieces)


def _fit(field: bytes, eol: bytes) -> bytes:
    """``field`` with every line of more than 998 octets folded at its last white space
    that leaves both parts within the limit (RFC 5322 2.1.1): the tag must not push a
    Subject line over it. It unfolds to the same value; a line without such a space
    stays as it is."""
    lines = field.split(eol)
    if max(map(len, lines)) <= _MAX_LINE:
        return field
    out: list[bytes] = []
    for line in lines:
        while len(line) > _MAX_LINE:
            cut = max(line.rfind(b" ", 1, _MAX_LINE + 1), line.rfind(b"\t", 1, _MAX_LINE + 1))
            if cut <= 0 or not line[:cut].strip() or not line[cut:].strip():
                break
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return eol.join(out)


def _text(value: bytes) -> str:
    """A Subject value as its reader sees it: encoded words decoded, raw 8-bit octets
    read as UTF-8 or else Windows-1252 (:func:`scanner.rules.headers.decode_value`,
    SpamAssassin's reading, close to amavis's ``safe_decode_mime``), unfolded. An
    encoded word that decodes to control characters (``=?x-unknown?B?AAAA?=``, three
    NULs) stays as it was written: a Subject written anew from this text would
    otherwise carry them, re-encoded, where the original only hid them."""
    return decode_value(value.replace(b"\r\n", b"\n"), "Subject", visible_only=True
                        ).decode("utf-8", "replace")


def _rewritten(text: str, eol: bytes) -> bytes:
    """A Subject value written anew: ``text`` (CR and LF made spaces) as it is when
    ASCII, else its words from the first to the last one that is not ASCII as RFC 2047
    encoded words and the ASCII words before and after them as they are, control
    characters included, as amavis's q_encode keeps its head and tail (a word too long
    for a line, or a ``=?`` there: encoded too); folded under 78 columns, lines ending
    with ``eol``."""
    text = text.replace("\r", " ").replace("\n", " ")
    head, middle, tail = _PLAIN_ENDS.fullmatch(text).groups(default="")  # type: ignore[union-attr]
    if max(map(len, (head + tail).split(" "))) > _LONGEST_PLAIN_WORD:
        head, middle, tail = "", text, ""
    if "=?" in head:  # text that reads as an encoded word (one kept as written) stays
        head, middle = "", head + middle  # inside ours, so no reader decodes it
    if "=?" in tail:
        middle, tail = middle + tail, ""
    if middle and (not middle.isascii() or
                   max(map(len, middle.split(" "))) > _LONGEST_PLAIN_WORD):
        middle = encode_words(middle, _SUBJECT_WORD_OCTETS).decode("ascii")
    return fold("Subject", head + middle + tail).replace("\r\n", "\n").encode("ascii") \
        .replace(b"\n", eol)


def _tag(prefix: str, before_encoded_word: bool) -> bytes:
    """The prefix's bytes. Encoded, its trailing space goes inside the last encoded word
    when an encoded word follows (white space between two of them is dropped when they
    are read), else after it as plain text (which is kept)."""
    if prefix.isascii():
        return prefix.encode("ascii")
    text = prefix.rstrip(" \t")
    space = prefix[len(text):]
    if before_encoded_word and space:
        return encode_words(text + space, _SUBJECT_WORD_OCTETS) + b" "
    return encode_words(text, _SUBJECT_WORD_OCTETS) + space.encode("ascii")


def encode_words(text: str, octets_per_word: int = _WORD_OCTETS) -> bytes:
    """``text`` as RFC 2047 encoded words (UTF-8, base64), each under 76 characters,
    separated by spaces (which a reader drops between encoded words)."""
    words, chunk = [], b""
    for char in text:
        octets = char.encode("utf-8", "surrogateescape")
        if len(chunk) + len(octets) > octets_per_word:
            words.append(chunk)
            chunk = b""
        chunk += octets
    words.append(chunk)
    return b" ".join(b"=?UTF-8?B?" + base64.b64encode(w) + b"?=" for w in words if w)


def fold(name: str, value: str, width: int = 78) -> str:
    """Fold a long structured value at spaces into CRLF + TAB continuation lines."""
    words = value.split(" ")
    lines, current = [], f"{name}: "
    for word in words:
        if len(current) + len(word) + 1 > width and current.strip() not in (f"{name}:", ""):
            lines.append(current.rstrip())
            current = "\t"
        current += word + " "
    lines.append(current.rstrip())
    return "\r\n".join(lines)[len(name) + 2:]

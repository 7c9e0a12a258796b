"""Edits of the header section on raw bytes: add headers, prefix the Subject, leave out
header fields (forged Authentication-Results).

The body and every other existing header byte stay as they were; only the lines we add,
the fields we leave out or the Subject value we prefix change.
"""

from __future__ import annotations

import base64
import re

from scanner.headerfields import line_end, named

# where a field found by headerfields.named (every Subject field, the obsolete
# "Subject :" form too) has its value: past its name, the colon and the blanks after it
_VALUE_START = re.compile(rb"[^:]*:[ \t]*")
_ENCODED_WORD_NEXT = re.compile(rb"(?:\r?\n[ \t]+)?=\?")
_WORD_OCTETS = 45  # UTF-8 octets per encoded word: 60 base64 characters, 72 in all


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


def prefix_subject(raw: bytes, prefix: str) -> bytes:
    """Put ``prefix`` in front of the value of every Subject field, as amavis edits
    them all; without one, add ``Subject: PREFIX`` (trailing space trimmed), ending
    like the message's lines. A prefix that is not ASCII goes in as RFC 2047 encoded
    words, so the header stays 7-bit and reads back as prefix + original text.

    As amavis, the prefix (3 characters or more) is first removed wherever the value
    already holds it, so mail that passes twice (a reply, a second filter pass) does
    not read ``***SPAM*** ***SPAM*** ...``; only a plain ASCII prefix written as such
    is found (amavis decodes encoded words first)."""
    if not prefix:
        return raw
    fields = named(raw, ("Subject",))
    if not fields:
        return b"Subject: " + _tag(prefix.rstrip(" \t"), False) + line_end(raw) + raw
    old = prefix.encode("ascii") if prefix.isascii() and len(prefix) >= 3 else b""
    pieces, pos = [], 0
    for field in fields:
        at, end = _VALUE_START.match(raw, field.start).end(), field.end  # type: ignore[union-attr]
        pieces += [raw[pos:at], _tag(prefix, bool(_ENCODED_WORD_NEXT.match(raw, at)))]
        pos = at
        if old and old in raw[at:end]:  # tagged before (a second pass): not twice
            pieces.append(raw[at:end].replace(old, b""))
            pos = end
    pieces.append(raw[pos:])
    return b"".join(pieces)


def _tag(prefix: str, before_encoded_word: bool) -> bytes:
    """The prefix's bytes. Encoded, its trailing space goes inside the last encoded word
    when an encoded word follows (white space between two of them is dropped when they
    are read), else after it as plain text (which is kept)."""
    if prefix.isascii():
        return prefix.encode("ascii")
    text = prefix.rstrip(" \t")
    space = prefix[len(text):]
    if before_encoded_word and space:
        return encode_words(text + space) + b" "
    return encode_words(text) + space.encode("ascii")


def encode_words(text: str) -> bytes:
    """``text`` as RFC 2047 encoded words (UTF-8, base64), each under 76 characters,
    separated by spaces (which a reader drops between encoded words)."""
    words, chunk = [], b""
    for char in text:
        octets = char.encode("utf-8", "surrogateescape")
        if len(chunk) + len(octets) > _WORD_OCTETS:
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

"""RFC 3461 xtext encoding, used by XFORWARD values and the DSN ENVID/ORCPT parameters."""

from __future__ import annotations

import re

_HEX = re.compile(r"\+([0-9A-Fa-f]{2})")
_HEX_BYTES = re.compile(rb"\+([0-9A-Fa-f]{2})")
_PLAIN = re.compile(r"[!-*,-<>-~]*")  # printable ASCII without "+" and "=": kept as is


class XtextError(ValueError):
    """A value is not valid xtext."""


def decode(value: str) -> str:
    """Decode ``+XX`` escapes; a ``+`` not followed by two hex digits is an error.

    The escapes are octets: read as UTF-8 (Postfix escapes the UTF-8 of an SMTPUTF8
    HELO name, RFC 6533 the UTF-8 of an ORCPT address), an octet that is not UTF-8
    kept as a surrogate escape, so that :func:`encode` gives the same text back. One
    character per octet made ``+D0+BF`` two Latin-1 letters, sent on doubly encoded.
    """
    if "+" not in value:
        return value
    if "+" in _HEX.sub("", value):
        raise XtextError(f"bad xtext escape in {value!r}")
    octets = _HEX_BYTES.sub(lambda m: bytes([int(m.group(1), 16)]),
                            value.encode("utf-8", "surrogateescape"))
    return octets.decode("utf-8", "surrogateescape")


def decode_text(value: str) -> str:
    """``decode`` with the octets read as UTF-8 (Postfix writes a UTF-8 address as
    ``ORCPT=rfc822;b+C3+B8b@...``); as ``decode`` if they are not UTF-8."""
    decoded = decode(value)
    try:
        return decoded.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return decoded


def encode(value: str) -> str:
    """Escape ``+``, ``=``, controls, space and non-ASCII as ``+XX`` (UTF-8 bytes)."""
    if _PLAIN.fullmatch(value):  # the usual case (host names, addresses): nothing to do
        return value
    out = []
    for byte in value.encode("utf-8", "surrogateescape"):
        if 33 <= byte <= 126 and byte not in (ord("+"), ord("=")):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)

"""RFC 3461 xtext encoding, used by XFORWARD values and the DSN ENVID/ORCPT parameters."""

from __future__ import annotations

import re

_HEX = re.compile(r"\+([0-9A-Fa-f]{2})")
_PLAIN = re.compile(r"[!-*,-<>-~]*")  # printable ASCII without "+" and "=": kept as is


class XtextError(ValueError):
    """A value is not valid xtext."""


def decode(value: str) -> str:
    """Decode ``+XX`` escapes; a ``+`` not followed by two hex digits is an error."""
    if "+" in _HEX.sub("", value):
        raise XtextError(f"bad xtext escape in {value!r}")
    return _HEX.sub(lambda m: chr(int(m.group(1), 16)), value)


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

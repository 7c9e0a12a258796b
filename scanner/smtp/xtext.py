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


_UNITEXT = re.compile(r"\\x\{([0-9A-Fa-f]{2,6})\}")


def encode_utf8_addr(address: str) -> str:
    """RFC 6533's utf-8-addr-xtext (an ORCPT of type ``utf-8``): a non-ASCII character
    (and ``\\``) as ``\\x{HEX}``, then xtext (``+``, ``=``, controls and space as
    ``+XX``)."""
    text = "".join(c if c.isascii() and c != "\\" else f"\\x{{{ord(c):X}}}"
                   for c in address)
    return encode(text)


def decode_utf8_addr(text: str) -> str:
    """The ``\\x{HEX}`` escapes of an xtext-decoded utf-8-addr as their characters; one
    that is no character fit for a header field (a control, a surrogate, beyond
    U+10FFFF) is kept as it is."""
    return _UNITEXT.sub(_unescape, text)


def _unescape(m: re.Match[str]) -> str:
    code = int(m.group(1), 16)
    if code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return m.group(0)
    return chr(code)

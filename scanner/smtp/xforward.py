"""Parse Postfix's XFORWARD command (XFORWARD_README) into client attributes."""

from __future__ import annotations

import ipaddress
import re

from scanner.smtp import xtext
from scanner.smtp.params import ParamError

ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
UNAVAILABLE = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
MAX_VALUE = 255
MAX_PROTO = 64  # Postfix smtpd's limit
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
"""A dotted quad as ``ipaddress`` writes it (no leading zeros): taken as it is."""


def parse(arg: str | None) -> dict[str, str | None]:
    """``NAME=x ADDR=y`` -> ``{"NAME": "x", "ADDR": "y"}``; ``[UNAVAILABLE]`` -> None."""
    if not arg or not arg.strip():
        raise ParamError("501 5.5.4 Syntax: XFORWARD attribute=value...")
    result: dict[str, str | None] = {}
    for token in arg.split():
        key, eq, raw = token.partition("=")
        key = key.upper()
        if not eq or key not in ATTRIBUTES:
            raise ParamError(f"501 5.5.4 Bad XFORWARD attribute name: {key[:20]}")
        try:
            value = xtext.decode(raw)
        except xtext.XtextError:
            raise ParamError(f"501 5.5.4 Bad XFORWARD {key} value (xtext)") from None
        if len(value) > MAX_VALUE:
            raise ParamError(f"501 5.5.4 XFORWARD {key} value too long")
        result[key] = None if value.upper() in UNAVAILABLE else _valid(key, value)
    return result


def _valid(key: str, value: str) -> str:
    if _CONTROL.search(value):
        raise ParamError(f"501 5.5.4 Bad XFORWARD {key} value (control characters)")
    if key == "ADDR":
        if _IPV4.fullmatch(value):  # the usual case, without ipaddress's parse
            return value
        bare = value[5:] if value.upper().startswith("IPV6:") else value
        try:
            return str(ipaddress.ip_address(bare))
        except ValueError:
            raise ParamError("501 5.5.4 Bad XFORWARD ADDR value") from None
    if key == "PORT" and not (value.isdigit() and int(value) <= 65535):
        raise ParamError("501 5.5.4 Bad XFORWARD PORT value")
    if key == "PROTO" and len(value) > MAX_PROTO:
        # any name, as Postfix's smtpd takes it: SMTP and ESMTP from smtpd, but QMQP
        # from qmqpd; refusing one would drop HELO, IDENT and SOURCE of the same command
        raise ParamError("501 5.5.4 Bad XFORWARD PROTO value")
    if key == "SOURCE" and value.upper() not in ("LOCAL", "REMOTE"):
        raise ParamError("501 5.5.4 Bad XFORWARD SOURCE value")
    return value

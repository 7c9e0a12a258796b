"""Parse and validate ESMTP MAIL/RCPT parameters, keeping values exactly as sent.

Keys are compared case-insensitively and stored upper-case; values keep their case
(DSN's ENVID and ORCPT are case-sensitive and must reach the next hop unchanged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scanner.smtp import xtext

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
"""C0 and C1 controls and DEL: never in a DSN field."""

Param = tuple[str, str | None]

NOTIFY_VALUES = {"SUCCESS", "FAILURE", "DELAY"}


@dataclass(frozen=True, slots=True)
class ParamError(Exception):
    """A parameter problem with the SMTP reply it deserves."""

    reply: str


def split_params(text: str) -> list[Param]:
    """``"BODY=8BITMIME SMTPUTF8"`` -> ``[("BODY", "8BITMIME"), ("SMTPUTF8", None)]``."""
    params: list[Param] = []
    for token in text.split():
        key, eq, value = token.partition("=")
        if not key or not key.replace("-", "").isalnum() or (eq and not value):
            raise ParamError(f"501 5.5.4 Syntax error in parameter {token[:40]!r}")
        params.append((key.upper(), value if eq else None))
    return params


def check_mail_params(params: list[Param], size_limit: int, smtputf8_ok: bool) -> None:
    """Raise :class:`ParamError` for any MAIL FROM parameter we cannot honour."""
    seen: set[str] = set()
    for key, value in params:
        if key in seen:
            raise ParamError(f"501 5.5.4 Duplicate MAIL parameter {key}")
        seen.add(key)
        if key == "BODY":
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                raise ParamError("501 5.5.4 BODY must be 7BIT or 8BITMIME")
        elif key == "SMTPUTF8":
            if value is not None:
                raise ParamError("501 5.5.4 SMTPUTF8 takes no value")
            if not smtputf8_ok:
                raise ParamError("555 5.5.4 SMTPUTF8 is not enabled")
        elif key == "SIZE":
            if value is None or not (value.isascii() and value.isdigit()):
                raise ParamError("501 5.5.4 SIZE needs a number")
            # more than 20 digits exceeds any limit (and int() refuses 4300 and more)
            digits = value.lstrip("0") or "0"
            if len(digits) > 20 or int(digits) > size_limit:
                raise ParamError("552 5.3.4 Message size exceeds fixed limit")
        elif key == "RET":
            if value is None or value.upper() not in ("FULL", "HDRS"):
                raise ParamError("501 5.5.4 RET must be FULL or HDRS")
        elif key == "ENVID":
            _xtext(value, 100, "ENVID")
        else:
            raise ParamError(f"555 5.5.4 Unsupported MAIL parameter {key}")


def check_rcpt_params(params: list[Param]) -> None:
    """Raise :class:`ParamError` for any RCPT TO parameter we cannot honour."""
    seen: set[str] = set()
    for key, value in params:
        if key in seen:
            raise ParamError(f"501 5.5.4 Duplicate RCPT parameter {key}")
        seen.add(key)
        if key == "NOTIFY":
            words = set((value or "").upper().split(","))
            if words != {"NEVER"} and not (words and words <= NOTIFY_VALUES):
                raise ParamError("501 5.5.4 NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY")
        elif key == "ORCPT":
            addr_type, semi, addr = (value or "").partition(";")
            if not semi or not addr_type or not addr:
                raise ParamError("501 5.5.4 ORCPT must be addr-type;address")
            _xtext(addr, 500, "ORCPT")
        else:
            raise ParamError(f"555 5.5.4 Unsupported RCPT parameter {key}")


def _xtext(value: str | None, limit: int, name: str) -> None:
    """Valid xtext without control characters once decoded: the value is copied into a
    DSN's fields, where a decoded CR or LF would start a field of the client's choosing
    (RFC 3461 4.2, 4.4 want printable text). UTF-8 passes: Postfix sends a UTF-8
    address as ``ORCPT=rfc822;b+C3+B8b@...``."""
    if value is None or len(value) > limit:
        raise ParamError(f"501 5.5.4 {name} is missing or too long")
    try:
        decoded = xtext.decode(value)
    except xtext.XtextError:
        raise ParamError(f"501 5.5.4 {name} is not valid xtext") from None
    if _CONTROL.search(decoded):
        raise ParamError(f"501 5.5.4 {name} holds a control character")


def render(params: tuple[Param, ...] | list[Param]) -> str:
    """Back to wire form: ``KEY=value KEY``."""
    return " ".join(k if v is None else f"{k}={v}" for k, v in params)

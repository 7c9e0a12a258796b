"""TNEF (``winmail.dat``) via ``tnefparse``: yields the attachments with their long names.

TNEF stores attachments uncompressed, so the output can't exceed the input; the bytes
still go through the counted writer. tnefparse runs under a step budget
(:mod:`decoders.guard`): crafted property counts made it loop for minutes and take
gigabytes; such a part is a decoding limit (DECODE_LIMIT_TIME, message UNCHECKED) and
stays a leaf for ClamAV. A TNEF without an OEM codepage attribute (Outlook reads it,
tnefparse stumbles) is parsed again with codepage 1252 put in.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from decoders.base import Child, CorruptPart, LimitExceeded
from decoders.context import DecodeContext
from decoders.guard import BudgetExceeded, step_budget
from decoders.mimeutil import clean_name
from decoders.part import Part

# tnefparse loops as often as counts in the file say (see decoders/guard.py); a real
# TNEF takes well under one traced step per byte (clam.tnef: 5,553 for 9,738 bytes)
BASE_STEPS = 200_000
STEPS_PER_BYTE = 10
MAX_STEPS = 5_000_000


def _name(attachment: object) -> str | None:
    # tnefparse decodes names as UTF-8 inside its properties (UnicodeDecodeError on
    # anything else), so every read is guarded and the raw bytes are the last resort
    for getter in ("long_filename", "name", "_name"):
        try:
            value = getattr(attachment, getter, None)
            value = value() if callable(value) else value
        except Exception:
            value = None
        if isinstance(value, bytes):
            value = value.decode("latin-1", "replace")
        if isinstance(value, str) and value.strip("\0 "):
            return clean_name(value.strip("\0 "))
    return None


OEM_CODEPAGE_ID = struct.pack("<I", 0x00069007)  # attOemCodepage, level 1


def with_codepage(data: bytes, codepage: int = 1252) -> bytes:
    """``data`` with an attOemCodepage attribute put after the TNEF header.

    Outlook reads a winmail.dat that names no codepage; tnefparse fails on it
    (``str.decode(None)``), which left the attachments unread.
    """
    value = struct.pack("<II", codepage, 0)
    attr = (b"\x01" + OEM_CODEPAGE_ID + struct.pack("<I", len(value)) + value
            + struct.pack("<H", sum(value) & 0xFFFF))
    return data[:6] + attr + data[6:]


def _parse(data: bytes, ctx: DecodeContext) -> Any:
    """tnefparse's TNEF object, under the step budget; TypeError passes through (a
    missing codepage), other failures are a corrupt part."""
    import tnefparse

    try:
        with step_budget(min(MAX_STEPS, BASE_STEPS + STEPS_PER_BYTE * len(data)),
                         ctx.deadline):
            return tnefparse.TNEF(data)
    except BudgetExceeded as exc:  # counts in the file made the parser loop
        raise LimitExceeded("time", f"tnef: {exc}") from None
    except TypeError as exc:
        if "encoding" in str(exc):
            raise
        raise CorruptPart(f"tnef: {type(exc).__name__}: {exc}"[:200]) from exc
    except Exception as exc:
        raise CorruptPart(f"tnef: {type(exc).__name__}: {exc}"[:200]) from exc


class TnefDecoder:
    """Extracts attachments from MS-TNEF containers."""

    name = "tnef"
    handles = frozenset({"tnef"})
    order = 45

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        data = part.data()
        try:
            tnef = _parse(data, ctx)
        except TypeError:  # no attOemCodepage: tnefparse decodes strings with None
            if OEM_CODEPAGE_ID in data:
                raise CorruptPart("tnef: unreadable") from None
            tnef = _parse(with_codepage(data), ctx)
        for attachment in tnef.attachments:
            ctx.check_time()
            data = getattr(attachment, "data", b"") or b""
            if isinstance(data, bytes):
                yield Child(blob=ctx.blob(data), name=_name(attachment))
        body = getattr(tnef, "htmlbody", None) or getattr(tnef, "body", None)
        if isinstance(body, bytes | str) and body:
            raw = body.encode("utf-8", "replace") if isinstance(body, str) else body
            yield Child(blob=ctx.blob(raw), name="tnef-body")

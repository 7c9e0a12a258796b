"""The envelope written in front of each quarantined message, so a file explains itself.

The index holds the envelope (sender, recipients) a release needs; if the index is lost
or corrupt, the files alone would not say whom a message was for. So, as amavis writes
``X-Envelope-From``/``X-Envelope-To`` into its quarantine files, each file starts with
a block of header fields::

    X-Scanner-Quarantine: 1; bytes=211
    Return-Path: <alice@example.org>
    X-Envelope-From: <alice@example.org>
    X-Envelope-To: <bob@example.test>,
     <carol@example.test>
    X-Quarantine-ID: <7vykgLjHGVrk>
    X-Quarantine-Category: SPAM
    X-Quarantine-Stored: 1764979200

followed by the message exactly as received. ``bytes`` is the length of the fields
after the first line, so the block is removed exactly (a message that starts with its
own ``X-Envelope-To`` keeps it). Files written before this block existed have none and
read as they are. ``scanner quarantine reindex`` rebuilds index rows from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MARK = b"X-Scanner-Quarantine: 1; bytes="
_FIRST = re.compile(rb"X-Scanner-Quarantine: 1; bytes=(\d{1,7})\r\n")
_FIELD = re.compile(rb"^([A-Za-z-]+): ?(.*?)\r\n(?=\S|\Z)", re.S | re.M)
_ADDR = re.compile(r"<([^<>]*)>")


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the block says."""

    sender: str
    recipients: list[str]
    mail_id: str
    category: str
    stored_at: float | None


def wrap(raw: bytes, *, sender: str, recipients: list[str], mail_id: str, category: str,
         stored_at: float) -> bytes:
    """The block, then ``raw``."""
    rcpts = ",\r\n ".join(f"<{_safe(r)}>" for r in recipients) or "<>"
    fields = (f"Return-Path: <{_safe(sender)}>\r\n"
              f"X-Envelope-From: <{_safe(sender)}>\r\n"
              f"X-Envelope-To: {rcpts}\r\n"
              f"X-Quarantine-ID: <{mail_id}>\r\n"
              f"X-Quarantine-Category: {_safe(category)}\r\n"
              f"X-Quarantine-Stored: {int(stored_at)}\r\n").encode("utf-8", "surrogateescape")
    return MARK + str(len(fields)).encode() + b"\r\n" + fields + raw


def split(data: bytes) -> tuple[Envelope | None, bytes]:
    """(the envelope, the message) of a stored file; (None, data) without a block."""
    m = _FIRST.match(data)
    if m is None:
        return None, data
    end = m.end() + int(m.group(1))
    if end > len(data):
        return None, data  # not ours after all (or cut short): keep every byte
    return _parse(data[m.end():end]), data[end:]


def _parse(block: bytes) -> Envelope:
    fields = {name.decode("ascii").lower(): value.decode("utf-8", "surrogateescape")
              for name, value in _FIELD.findall(block)}
    sender = _first_addr(fields.get("x-envelope-from", ""))
    stored = fields.get("x-quarantine-stored", "")
    return Envelope(
        sender=sender,
        recipients=[a for a in _ADDR.findall(fields.get("x-envelope-to", "")) if a],
        mail_id=_first_addr(fields.get("x-quarantine-id", "")),
        category=fields.get("x-quarantine-category", "").strip(),
        stored_at=float(stored) if stored.strip().isdigit() else None,
    )


def _first_addr(value: str) -> str:
    found = _ADDR.findall(value)
    return found[0] if found else ""


def _safe(text: str) -> str:
    """One line, no angle brackets: an address or word fit for a header field."""
    return re.sub(r"[\r\n<>]", "", text)

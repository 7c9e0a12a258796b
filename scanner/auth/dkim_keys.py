"""Fetch DKIM public keys (``SELECTOR._domainkey.DOMAIN`` TXT) ahead of verification.

dkimpy looks keys up synchronously through a ``dnsfunc``; we look them all up first,
concurrently and under the message's DNS budget, then hand dkimpy a ``dnsfunc`` that
answers from this table. The table also knows which lookups failed temporarily, so a
DNS timeout becomes ``temperror`` instead of dkimpy's "fail".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from scanner.dns.client import Answer
from scanner.headerfields import blank_line

Lookup = Callable[[str, str], Awaitable[Answer]]


def key_name(selector: str, domain: str) -> str:
    return f"{selector.strip().lower()}._domainkey.{domain.strip().rstrip('.').lower()}"


def header_section(raw: bytes) -> bytes:
    """The header lines of a message (up to and including the empty line), for cheap
    parsing: where ``\\r?\\n\\r?\\n`` would end."""
    _, end = blank_line(raw)
    return raw[:end] if end >= 0 else raw


def parsed_headers(raw: bytes) -> list[tuple[bytes, bytes]] | None:
    """dkimpy's view of the header section; None when dkimpy cannot parse it (a line
    that is no header field, a continuation line first, ...)."""
    try:
        headers, _ = dkim.rfc822_parse(header_section(raw))
    except Exception:  # MessageFormatError, IndexError on hostile input
        return None
    return [(bytes(name), bytes(value)) for name, value in headers]


def has_header(raw: bytes, name: bytes) -> bool:
    """Does the header section hold a field ``name`` (checked without dkimpy)?"""
    head = header_section(raw).lower()
    return head.startswith(name.lower() + b":") or (b"\n" + name.lower() + b":") in head


def tags(value: bytes) -> dict[str, str] | None:
    """The tag=value list of a signature header as text; None when it is malformed."""
    try:
        parsed = parse_tag_value(value)
    except (InvalidTagValueList, ValueError):
        return None
    return {k.decode("ascii", "replace").lower(): v.decode("utf-8", "replace")
            for k, v in parsed.items()}


@dataclass(slots=True)
class KeyTable:
    """Key records by name: the TXT text, or absent; plus the names that timed out."""

    records: dict[str, bytes] = field(default_factory=dict)
    temporary: set[str] = field(default_factory=set)

    def dnsfunc(self, name: bytes | str, timeout: float = 5) -> bytes:
        """dkimpy's ``dnsfunc(name, timeout)``: the TXT record, b'' when there is none."""
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        return self.records.get(text.rstrip(".").lower(), b"")


async def fetch_keys(names: Iterable[str], lookup: Lookup) -> KeyTable:
    """Look every key record up concurrently."""
    wanted = sorted(set(names))
    answers = await asyncio.gather(*(lookup(n, "TXT") for n in wanted))
    table = KeyTable()
    for name, answer in zip(wanted, answers, strict=True):
        if answer.temporary:
            table.temporary.add(name)
            continue
        texts = answer.texts()
        keys = [t for t in texts if "p=" in t] or texts
        if keys:
            table.records[name] = keys[0].encode("utf-8", "replace")
    return table

"""Fetch DKIM public keys (``SELECTOR._domainkey.DOMAIN`` TXT) ahead of verification.

dkimpy looks keys up synchronously through a ``dnsfunc``; we look them all up first,
concurrently and under the message's DNS budget, then hand dkimpy a ``dnsfunc`` that
answers from this table. The table also knows which lookups failed temporarily, so a
DNS timeout becomes ``temperror`` instead of dkimpy's "fail".

The message is handed to dkimpy parsed by :func:`split_message`, which also reads the
obsolete ``Name : value`` form that dkimpy's own parser refuses.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from scanner.dns.client import Answer
from scanner.headerfields import blank_line

Lookup = Callable[[str, str], Awaitable[Answer]]
Signer = TypeVar("Signer", bound=dkim.DomainSigner)
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+[ \t]*):")


def key_name(selector: str, domain: str) -> str:
    return f"{selector.strip().lower()}._domainkey.{domain.strip().rstrip('.').lower()}"


def header_section(raw: bytes) -> bytes:
    """The header lines of a message (up to and including the empty line), for cheap
    parsing: where ``\\r?\\n\\r?\\n`` would end."""
    _, end = blank_line(raw)
    return raw[:end] if end >= 0 else raw


class FieldName(bytes):
    """A header field name written with white space before its colon (``Subject  :``).

    The bytes are the name as written, which simple canonicalisation hashes; ``lower()``
    is the name proper (RFC 5322 4.5.3: the white space is no part of it), lowercased:
    dkimpy picks the fields ``h=`` lists and finds ``DKIM-Signature`` with ``lower()``.
    """

    def lower(self) -> bytes:
        return bytes(self).lower().rstrip(b" \t")


def split_message(raw: bytes) -> tuple[list[list[bytes]], bytes]:
    """The message as dkimpy holds it: ``[name, value]`` header fields (each value with
    its continuation lines, ending in CRLF) and the body with CRLF line ends.

    This is dkimpy's ``rfc822_parse`` (a bare LF ends a line, an mbox ``From `` line is
    skipped) except that it also reads a field written with white space before its colon
    (``Subject  : text``, RFC 5322 4.5's obsolete syntax, which relaxed header
    canonicalisation removes, RFC 6376 3.4.2): dkimpy refused the whole message, so
    every signature became permerror. Such a name is a :class:`FieldName`: its bytes
    keep the white space, so simple canonicalisation hashes the field as it stands,
    while its ``lower()`` (with which dkimpy and we look fields up) drops it.
    Raises ``dkim.MessageFormatError`` for a line that is no header field.
    """
    lines = re.split(rb"\r?\n", raw)
    headers: list[list[bytes]] = []
    for at, line in enumerate(lines):
        if not line:
            return headers, b"\r\n".join(lines[at + 1:])
        if line[:1] in (b" ", b"\t"):
            if not headers:
                raise dkim.MessageFormatError("a continuation line before any header field")
            headers[-1][1] += line + b"\r\n"
            continue
        found = _FIELD_NAME.match(line)
        if found:
            name = found.group(1)
            if name[-1:] in (b" ", b"\t"):
                name = FieldName(name)
            headers.append([name, line[found.end():] + b"\r\n"])
        elif not line.startswith(b"From "):
            raise dkim.MessageFormatError(f"not a header field: {line[:60]!r}")
    return headers, b""


def dkimpy_message(cls: type[Signer], raw: bytes, **options: Any) -> Signer:
    """A dkimpy object (``dkim.DKIM``, ``dkim.DomainSigner``) holding ``raw`` as
    :func:`split_message` reads it; raises ``dkim.MessageFormatError`` like dkimpy."""
    signer = cls(None, **options)
    signer.headers, signer.body = split_message(raw)
    return signer


def parsed_headers(raw: bytes) -> list[tuple[bytes, bytes]] | None:
    """The header fields as dkimpy sees them (see :func:`split_message`); None when
    they cannot be parsed (a line that is no header field, a continuation line first,
    ...)."""
    try:
        headers, _ = split_message(header_section(raw))
    except dkim.MessageFormatError:
        return None
    return [(name, value) for name, value in headers]


def has_header(raw: bytes, name: bytes) -> bool:
    """Does the header section hold a field ``name`` (checked without dkimpy; white
    space before the colon allowed, as :func:`split_message` reads it)?"""
    head = header_section(raw).lower()
    if head.startswith(name.lower() + b":") or (b"\n" + name.lower() + b":") in head:
        return True
    return re.search(rb"(?:^|\n)" + re.escape(name.lower()) + rb"[ \t]+:", head) is not None


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

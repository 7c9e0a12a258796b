"""AM.PDP framing: ``name=value`` lines ending in CRLF, a request ended by an empty line.

Values are ``%XX``-encoded where they hold ``%``, spaces, control or non-ASCII
bytes; a value may consist of several fields separated by single spaces (each field
encoded on its own), e.g. ``setreply=250 2.6.0 Ok,%20id=rel-...``. Names repeat
(one ``recipient=`` line per recipient), so a request is a list of pairs.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

MAX_LINE = 16384
MAX_ATTRIBUTES = 1000

_HEX = re.compile(rb"%([0-9A-Fa-f]{2})")


class ProtocolError(Exception):
    """The peer broke the framing (line too long, too many attributes, no '=')."""


def decode(raw: bytes) -> str:
    """``Ok,%20id`` -> ``Ok, id`` (invalid UTF-8 kept with surrogateescape)."""
    return _HEX.sub(lambda m: bytes([int(m.group(1), 16)]), raw).decode(
        "utf-8", "surrogateescape")


def encode_field(value: str) -> str:
    """Hex-encode ``%``, space and every byte outside printable ASCII."""
    out = []
    for byte in value.encode("utf-8", "surrogateescape"):
        out.append(chr(byte) if 0x21 <= byte <= 0x7E and byte != 0x25 else f"%{byte:02x}")
    return "".join(out)


def encode_name(name: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "_-") else f"%{ord(c):02x}"
                   for c in name)


def format_attr(name: str, *fields: str) -> bytes:
    """One attribute line: ``format_attr("setreply", "250", "2.6.0", "Ok, id=...")``."""
    return (f"{encode_name(name)}=" + " ".join(encode_field(f) for f in fields) + "\r\n"
            ).encode("ascii")


def format_message(attrs: Iterable[tuple[str, tuple[str, ...]]]) -> bytes:
    """Several attribute lines and the empty line that ends them."""
    return b"".join(format_attr(name, *fields) for name, fields in attrs) + b"\r\n"


def parse_line(line: bytes) -> tuple[str, str]:
    """``name=value`` (CRLF or LF stripped) -> decoded pair."""
    body = line.rstrip(b"\r\n")
    name, eq, value = body.partition(b"=")
    if not eq or not name:
        raise ProtocolError(f"not an attribute line: {decode(body[:80])!r}")
    return decode(name).strip(), decode(value)


async def read_message(reader: asyncio.StreamReader) -> list[tuple[str, str]] | None:
    """The next request; None on a clean end of the connection before one started."""
    attrs: list[tuple[str, str]] = []
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip() and not attrs:
                return None
            raise ProtocolError("connection closed in the middle of a request") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"line longer than {MAX_LINE} bytes") from None
        if len(line) > MAX_LINE:
            raise ProtocolError(f"line longer than {MAX_LINE} bytes")
        if line in (b"\r\n", b"\n"):
            if attrs:
                return attrs
            continue  # stray empty lines between requests
        attrs.append(parse_line(line))
        if len(attrs) > MAX_ATTRIBUTES:
            raise ProtocolError(f"more than {MAX_ATTRIBUTES} attributes")


def parse_reply(data: bytes) -> list[tuple[str, str]]:
    """A whole server answer (for clients and tests) -> decoded pairs."""
    pairs = []
    for line in data.split(b"\n"):
        if line.strip():
            pairs.append(parse_line(line))
    return pairs

"""The DNS client's transport: one UDP exchange, and a quick reading of plain NXDOMAINs.

dnspython parses every answer that carries records, but its
stub resolver and message parser cost more CPU than a mail filter can spend on the
answer it gets most: NXDOMAIN, "not listed", from DNS blocklists (measured against a
private NSD, 3,000 queries: 0.40 ms of CPU per query through ``dns.asyncresolver``,
0.32 ms with dnspython's ``asyncquery.udp`` and parser, 0.13 ms when the reply is not
parsed into a message). :func:`quick_nxdomain` reads such a reply's header, checks it
answers our question, and takes the negative TTL from its SOA (RFC 2308) without
building a message; every other reply goes to dnspython.

Building the query through ``dns.message.make_query`` and ``to_wire`` cost another
0.2 ms per query (a fifth of the DNS checks' CPU in ``bench/throughput/profile_pipeline.py
--profile``), so :func:`build_query` writes the packet of an ordinary name directly:
the same bytes dnspython writes (tests compare them); anything unusual (escapes,
non-ASCII, empty or over-long labels) is still built by dnspython.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct

NXDOMAIN = 3
_ERRORS = (1, 2, 4, 5)  # FORMERR, SERVFAIL, NOTIMP, REFUSED
NO_EDNS_RCODES = frozenset((1, 4, 16))
"""FORMERR, NOTIMP, BADVERS: what a server that does not understand our EDNS0 query
answers (RFC 6891 sections 6.2.2 and 7); the query is asked again without OPT."""
_FLAG_QR = 0x8000
_FLAG_TC = 0x0200
_OPCODE = 0x7800
_SOA = 6


EDNS_PAYLOAD = 1232
# header flags RD; one question; one additional record: EDNS0's OPT with our payload size
_HEADER_TAIL = struct.pack("!HHHHH", 0x0100, 1, 0, 0, 1)
_OPT = b"\x00" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, 0, 0)


def build_query(name: str, rdtype: int, query_id: int | None = None) -> bytes | None:
    """The wire form of a recursive query for ``name`` (absolute; a final dot optional)
    with EDNS0 (payload 1232, the DNS Flag Day 2020 figure), or None when the name needs
    dnspython (escapes, non-ASCII, an empty or over-long label, over 255 octets)."""
    if not name.isascii() or "\\" in name:
        return None
    if name.endswith("."):
        name = name[:-1]
    wire = bytearray()
    for label in name.encode("ascii").split(b".") if name else ():
        if not 0 < len(label) <= 63:
            return None
        wire.append(len(label))
        wire += label
    wire.append(0)
    if len(wire) > 255:
        return None
    if query_id is None:
        query_id = secrets.randbits(16)
    return (struct.pack("!H", query_id) + _HEADER_TAIL + bytes(wire)
            + struct.pack("!HH", rdtype, 1) + _OPT)


def uses_edns(query: bytes) -> bool:
    """Whether ``query`` (ours: :func:`build_query`, or dnspython's ``make_query`` with
    ``use_edns=0``) ends with our OPT record."""
    return query.endswith(_OPT) and query[10:12] == b"\x00\x01"


def without_edns(query: bytes) -> bytes:
    """``query`` with our OPT record taken out (ARCOUNT 0) and a fresh id: the retry
    RFC 6891 section 7 asks for after FORMERR, NOTIMP or BADVERS."""
    return (struct.pack("!H", secrets.randbits(16)) + query[2:10] + b"\x00\x00"
            + query[12:-len(_OPT)])


def skip_name(data: bytes, pos: int) -> int | None:
    """The offset after the (possibly compressed) name at ``pos``, or None if malformed."""
    for _ in range(128):  # a name has at most 127 labels
        if pos >= len(data):
            return None
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return pos + 2 if pos + 2 <= len(data) else None
        if length & 0xC0:
            return None
        pos += 1 + length
    return None


def answers_question(query: bytes, reply: bytes) -> int | None:
    """The offset after the question if ``reply`` is a response to ``query`` (same id,
    QR set, standard query, one question equal to ours in any letter case, as RFC 5452
    section 9.1 and SpamAssassin's DnsResolver match answers), else None. An error
    response (FORMERR, SERVFAIL, NOTIMP, REFUSED) without a question counts too, as
    dnspython's ``is_response`` lets it."""
    if len(reply) < 12 or reply[:2] != query[:2]:
        return None
    flags, qdcount = struct.unpack_from("!HH", reply, 2)
    if not flags & _FLAG_QR or flags & _OPCODE:
        return None
    if qdcount == 0 and flags & 0xF in _ERRORS:
        return 12
    if qdcount != 1:
        return None
    name_end = skip_name(query, 12)
    if name_end is None or len(reply) < name_end + 4:
        return None
    if (reply[12:name_end].lower() != query[12:name_end].lower()
            or reply[name_end:name_end + 4] != query[name_end:name_end + 4]):
        return None
    return name_end + 4


def quick_nxdomain(query: bytes, reply: bytes) -> float | None:
    """The negative TTL (0.0 without an SOA) if ``reply`` is a plain NXDOMAIN answer to
    ``query`` (:func:`answers_question`), not truncated, with no answer records. None
    for anything else, which the caller hands to dnspython."""
    pos = answers_question(query, reply)
    if pos is None:
        return None
    flags, _qdcount, ancount, nscount = struct.unpack_from("!HHHH", reply, 2)
    if flags & _FLAG_TC or flags & 0xF != NXDOMAIN or ancount:
        return None
    for _ in range(nscount):
        after = skip_name(reply, pos)
        if after is None or after + 10 > len(reply):
            return None
        rtype, _class, ttl, rdlength = struct.unpack_from("!HHIH", reply, after)
        pos = after + 10 + rdlength
        if pos > len(reply):
            return None
        if rtype == _SOA and rdlength >= 22:  # MINIMUM: the last field of the SOA
            (minimum,) = struct.unpack_from("!I", reply, pos - 4)
            return float(min(ttl, minimum))
    return 0.0


def truncated(reply: bytes) -> bool:
    """The reply's TC flag: it did not fit, ask again over TCP."""
    return len(reply) >= 4 and bool((reply[2] << 8 | reply[3]) & _FLAG_TC)


async def udp_exchange(query: bytes, server: tuple[str, int], timeout: float) -> bytes | None:
    """Send ``query`` to ``server``; the first datagram back that answers it
    (:func:`answers_question`), or None after ``timeout``. Any other datagram (a late
    answer to an earlier query, a forgery, garbage) is dropped and the wait goes on.
    The socket is connected, so the kernel drops datagrams from anyone else; its source
    port is the kernel's random choice. OSError (no route, port unreachable)
    propagates."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, server)
        await loop.sock_sendall(sock, query)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    reply = await loop.sock_recv(sock, 65535)
                    if answers_question(query, reply) is not None:
                        return reply
        except TimeoutError:
            return None

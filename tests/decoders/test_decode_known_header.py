"""The top-level header section is parsed once: the MIME decoder takes the parse stage's
message (``KnownHeader``) when it would parse the same fields, and parses its own
otherwise (``Name :`` fields, LF line ends, an mbox ``From`` line, a section readers
split differently). Either way the part tree and the hits are the same.
"""

from __future__ import annotations

import hashlib

import pytest

from decoders.mimeutil import KnownHeader, parse_known, split_header_section
from decoders.unpack import Unpacked, unpack
from scanner.pipeline.parse import header_section, parse_headers

PLAIN = (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n"
         b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
         b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
         b"--XX\r\nContent-Type: application/octet-stream; name=\"a.exe\"\r\n"
         b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--XX--\r\n")
SPACE_COLON = PLAIN.replace(b"Content-Type: multipart", b"Content-Type : multipart")
LF_ONLY = PLAIN.replace(b"\r\n", b"\n")
MBOX = b"From a@example.org Mon Jan  1 00:00:00 2024\r\n" + PLAIN
# a line that is no header field, then a Content-Type Thunderbird would read
AMBIGUOUS = PLAIN.replace(b"Subject: hi\r\n", b"Subject: hi\r\nno field here\r\n")
FOLDED = PLAIN.replace(b"Subject: hi\r\n", b"Subject: a long\r\n\tfolded one\r\n")
NO_BODY = b"From: a@example.org\r\nSubject: only a header\r\n"


def _tree(result: Unpacked) -> list[tuple]:
    return [(p.level, p.declared_type, p.detected_type, p.name, tuple(p.headers),
             hashlib.sha256(p.data()).hexdigest()) for p in result.parts]


def _hits(result: Unpacked) -> list[tuple]:
    return [(h.symbol, h.options, h.part) for h in result.hits]


@pytest.mark.parametrize("raw", [PLAIN, SPACE_COLON, LF_ONLY, MBOX, AMBIGUOUS, FOLDED,
                                 NO_BODY],
                         ids=["plain", "space-colon", "lf", "mbox", "ambiguous", "folded",
                              "no-body"])
def test_same_parts_and_hits_with_and_without_the_known_header(raw: bytes) -> None:
    known = KnownHeader(header_section(raw), parse_headers(raw))
    with unpack(raw) as alone, unpack(raw, known_header=known) as shared:
        assert _tree(shared) == _tree(alone)
        assert _hits(shared) == _hits(alone)


@pytest.mark.parametrize(("raw", "reused"), [
    (PLAIN, True), (FOLDED, True), (SPACE_COLON, False), (LF_ONLY, False), (MBOX, False),
    (AMBIGUOUS, False)])
def test_the_known_message_is_taken_only_for_the_same_fields(raw: bytes, reused: bool) -> None:
    known = KnownHeader(header_section(raw), parse_headers(raw))
    head = split_header_section(raw)[0]
    msg = parse_known(head, known)
    assert (msg is known.message) is reused
    assert msg.items() == parse_known(head, None).items() or not reused


def test_a_plain_message_is_not_taken_for_an_entity() -> None:
    """A Message from another parser (no Entity) is parsed again, not trusted."""
    from email.parser import BytesHeaderParser
    from email.policy import compat32

    section = header_section(PLAIN)
    other = KnownHeader(section, BytesHeaderParser(policy=compat32).parsebytes(section))
    assert parse_known(split_header_section(PLAIN)[0], other) is not other.message

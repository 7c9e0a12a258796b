"""Text extraction: charsets, HTML, MIME structure, broken input, size limits."""

from __future__ import annotations

import base64
import itertools
import os
import re
import time

from scanner.ml.charsets import decode_bytes, decode_header_value, normalise_charset
from scanner.ml.html_text import html_to_text
from scanner.ml.text import ExtractLimits, message_text, split_header_section, strip_mbox_from
from tests.ml.conftest import CORPORA


def read(name: str) -> bytes:
    return (CORPORA / name).read_bytes()


def test_plain_message_headers_and_body() -> None:
    mt = message_text(read("ham-plain.eml"))
    assert mt.header("subject") == "Re: Minutes of the café meeting"
    assert "café renovation" in mt.body_text
    assert mt.urls == ["https://wiki.example.org/minutes/2025-01"]
    assert mt.has_plain and not mt.has_html
    # the mbox From_ line is not a header
    assert all(name != "from alice@example.org mon jan" for name, _ in mt.headers)


def test_html_entities_scripts_and_links() -> None:
    mt = message_text(read("spam-html.eml"))
    assert "You've been selected" in mt.body_text
    assert "90% off" in mt.body_text and "& get" in mt.body_text
    assert "var x" not in mt.body_text and "color:red" not in mt.body_text
    assert "http://198.51.100.99/claim?id=42" in mt.urls
    assert "mailto:stop@deals.example.biz" in mt.urls
    assert "FREE" in mt.body_text  # alt text is visible text
    assert {"font", "a", "img"} <= set(mt.html_tags)
    assert mt.has_html and not mt.has_plain


def test_multipart_parts_and_attachments() -> None:
    mt = message_text(read("multipart-attachment.eml"))
    names = [p.filename for p in mt.attachments]
    assert names == ["invoice.pdf", "photos.jpg.exe"]
    types = [p.content_type for p in mt.parts]
    assert types == ["text/plain", "text/html", "application/pdf", "application/zip"]
    assert mt.body_text.count("Please find the") == 2


def test_broken_charsets_and_8bit_headers_never_raise() -> None:
    mt = message_text(read("bad-charset.eml"))
    assert "Hello world" in mt.body_text
    assert "latin bytes" in mt.body_text
    assert mt.header("from")  # 8-bit bytes decoded somehow
    assert "broken" in mt.header("subject")


def test_charset_helpers() -> None:
    assert normalise_charset("x-unknown") == ""
    assert normalise_charset("base64") == ""  # a codec, but not a text encoding
    assert normalise_charset("ks_c_5601-1987") == "cp949"
    assert decode_bytes("héllo".encode("latin-1"), "us-ascii") == "héllo"
    assert decode_bytes("héllo".encode(), None) == "héllo"
    assert decode_bytes(b"\xff\xfe", "no-such-charset")
    assert decode_header_value("=?iso-8859-1?q?caf=E9?=") == "café"
    assert decode_header_value("=?bogus?B?!!!?=") is not None


def test_html_parser_survives_garbage() -> None:
    result = html_to_text("<a href='x'><<<>>><script>unterminated")
    assert result.urls == ["x"]
    assert "unterminated" not in result.text


def test_binary_junk_and_empty_input() -> None:
    junk = os.urandom(20000)
    mt = message_text(junk)
    assert isinstance(mt.body_text, str)
    assert message_text(b"").body_text == ""
    assert message_text(b"\x00\x01\x02").headers == []


def test_large_message_is_truncated_and_fast() -> None:
    line = b"A" * 76 + b"\r\n"
    body = line * (50 * 1024 * 1024 // len(line))  # ~50 MB of text
    raw = b"From: x@example.com\r\nSubject: big\r\nContent-Type: text/plain\r\n\r\n" + body
    started = time.monotonic()
    mt = message_text(raw)
    assert time.monotonic() - started < 5.0
    assert mt.truncated
    assert len(mt.body_text) <= ExtractLimits().max_part_bytes


def test_strip_mbox_from() -> None:
    assert strip_mbox_from(b"From x Mon\nA: b\n") == b"A: b\n"
    assert strip_mbox_from(b"A: b\n") == b"A: b\n"
    assert strip_mbox_from(b"From nothing-else") == b""


def test_header_split_equals_the_regular_expression_it_replaced() -> None:
    """Exhaustive over short strings of CR, LF and text: the same split as \\r?\\n\\r?\\n."""

    def reference(raw: bytes) -> tuple[bytes, bytes]:
        m = re.search(rb"\r?\n\r?\n", raw)
        return (raw, b"") if m is None else (raw[: m.start()], raw[m.end() :])

    for length in range(8):
        for combo in itertools.product((b"\r", b"\n", b"a"), repeat=length):
            raw = b"".join(combo)
            assert split_header_section(raw) == reference(raw), raw
    assert split_header_section(b"A: 1\r\n\r\nbody\r\n") == (b"A: 1", b"body\r\n")
    assert split_header_section(b"A: 1\n\nbody") == (b"A: 1", b"body")


def test_a_multipart_no_delimiter_splits_is_read_as_text() -> None:
    # the boundary parameter and the delimiter lines differ by a space (two spam of the
    # SpamAssassin corpus are written so): mail clients and the decoders show the body
    raw = (b"From: a@example.com\r\nSubject: offer\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/alternative; boundary="=Boundary 1"\r\n\r\n'
           b"--= Boundary 1\r\nContent-Type: text/plain\r\n\r\n"
           b"Refinance your mortgage today at http://rates.example.net/now\r\n")
    mt = message_text(raw)
    assert "Refinance your mortgage today" in mt.body_text
    assert mt.urls == ["http://rates.example.net/now"]
    assert mt.has_plain


def test_utf16_without_a_byte_order_mark_is_read_in_its_byte_order() -> None:
    for order in ("utf-16-be", "utf-16-le"):
        raw = (b"From: a@example.com\r\nContent-Type: text/plain; charset=UTF-16\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n"
               + base64.encodebytes("Claim your prize now".encode(order)))
        assert message_text(raw).body_text == "Claim your prize now", order
    # encoded words in header fields go through the same decoder
    word = base64.b64encode("Prize".encode("utf-16-be")).decode()
    assert decode_header_value(f"=?utf-16?b?{word}?=") == "Prize"

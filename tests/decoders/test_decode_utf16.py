"""Text labelled ``UTF-16`` without a byte-order mark (RFC 2781 section 4.3: read it
big-endian; SpamAssassin 4 guesses the order, and the two agree on these inputs).

Python's ``utf-16`` codec read such text in the machine's order (little-endian on x86):
big-endian text became CJK-looking garbage, its words and URIs lost to every check.
"""

from __future__ import annotations

import base64

import pytest

from decoders import unpack
from decoders.mimeutil import decode_words, to_text

TEXT = "Visit http://example.com/buy now"


def _utf16_message(data: bytes, charset: str = "utf-16") -> bytes:
    body = base64.encodebytes(data)
    return (b"From: a@example.org\nTo: b@example.net\nSubject: t\nMIME-Version: 1.0\n"
            b"Content-Type: text/plain; charset=" + charset.encode() +
            b"\nContent-Transfer-Encoding: base64\n\n" + body)


@pytest.mark.parametrize("codec", ["utf-16-be", "utf-16-le", "utf-16"])
def test_a_utf16_part_reads_in_its_byte_order_with_or_without_a_bom(codec: str) -> None:
    # "utf-16" writes a BOM; the explicit codecs write none
    with unpack(_utf16_message(TEXT.encode(codec))) as result:
        assert result.parts[1].text == TEXT


def test_big_endian_text_without_ascii_is_read_big_endian_as_the_rfc_says() -> None:
    text = "日本語のテキスト"
    assert to_text(text.encode("utf-16-be"), "UTF-16") == text


def test_little_endian_text_with_spaces_is_recognised() -> None:
    text = "Привет мир и всем"
    assert to_text(text.encode("utf-16-le"), "utf16") == text


def test_explicit_labels_are_taken_at_their_word() -> None:
    # big-endian octets labelled little-endian stay a wrong label, read as labelled
    data = TEXT.encode("utf-16-be")
    assert to_text(data, "UTF-16BE") == TEXT
    assert to_text(data, "UTF-16LE") == data.decode("utf-16-le")
    assert to_text(TEXT.encode("utf-16-le"), "utf-16le") == TEXT


def test_a_bom_decides_and_is_dropped() -> None:
    data = b"\xff\xfe" + "A\u4e00".encode("utf-16-le")  # NULs would say big-endian
    assert to_text(data, "utf-16") == "A\u4e00"


def test_odd_length_and_empty_data_never_raise() -> None:
    assert to_text(TEXT.encode("utf-16-be") + b"x", "utf-16").startswith(TEXT)
    assert to_text(b"", "utf-16") == ""
    assert to_text(b"\x00", "utf-16") == "\ufffd"


def test_an_encoded_word_in_utf16_big_endian_is_decoded() -> None:
    word = base64.b64encode("Cheap pills".encode("utf-16-be")).decode()
    assert decode_words(f"=?utf-16?B?{word}?= today") == "Cheap pills today"

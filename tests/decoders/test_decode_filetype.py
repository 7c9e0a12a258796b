"""File typing: libmagic descriptions mapped to short types; mismatch symbols."""

from __future__ import annotations

import gzip
import io
import zipfile

import pytest

from decoders import unpack
from decoders.context import Blob
from decoders.filetype import detect, looks_like_mail, short_type
from tests.decoders.builders import message, pe_exe, zip_bytes


def blob(data: bytes) -> Blob:
    return Blob(len(data), "", data=data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (zip_bytes({"a": b"b"}), "zip"),
        (gzip.compress(b"x"), "gz"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "pdf"),
        (b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + b"\0" * 17, "png"),
        (b"GIF89a" + b"\0" * 20, "gif"),
        (b"plain words only\n", "asc"),
        (b"<html><body><p>hi</p></body></html>\n", "html"),
        (b"", "empty"),
    ],
)
def test_detect(data: bytes, expected: str) -> None:
    assert detect(blob(data))[0] == expected


def test_short_type_table() -> None:
    assert short_type("PE32 executable (GUI) Intel 80386, for MS Windows") == "exe-ms"
    assert short_type("7-zip archive data, version 0.4") == "7z"
    assert short_type("Zip archive data, at least v2.0 to extract") == "zip"
    assert short_type("ELF 64-bit LSB executable, x86-64") == "exe-unix"
    assert short_type("something nobody knows") == "dat"


def test_mail_heuristic() -> None:
    assert looks_like_mail(b"From a@b Mon Jan  1 00:00:00 2024\nFrom: x\nSubject: y\n\nbody")
    assert not looks_like_mail(b"Dear friend,\nthis is text: with a colon\n")


def test_exe_named_pdf_gives_both_mismatch_symbols() -> None:
    raw = message(("invoice.pdf", pe_exe()))
    raw = raw.replace(b"application/octet-stream", b"application/pdf")
    with unpack(raw) as result:
        att = result.parts[2]
        assert att.detected_type == "exe-ms"
        hits = {h.symbol: h for h in result.hits}
        assert hits["MIME_TYPE_MISMATCH"].part == att.path_string()
        assert hits["MIME_EXT_MISMATCH"].options == ("pdf", "exe-ms")


def test_consistent_types_give_no_symbol() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "hello")
    raw = message(("a.zip", buf.getvalue())).replace(
        b"application/octet-stream", b"application/zip"
    )
    with unpack(raw) as result:
        assert not {"MIME_TYPE_MISMATCH", "MIME_EXT_MISMATCH"} & result.symbols()


def test_key_value_text_is_not_mail() -> None:
    # an RSS item mailed as text/plain: header-shaped lines, but no message header
    rss = (b"URL: http://news.example/2002/09/24#item\r\nDate: Tue, 24 Sep 2002 15:05:13 GMT\r\n"
           b"\r\nThe story itself.\r\n")
    assert not looks_like_mail(rss)
    assert looks_like_mail(b"Date: Tue, 24 Sep 2002\r\nSubject: hi\r\n\r\nbody")
    assert looks_like_mail(b"Received: from a by b\r\n\tid 1\r\nFrom: x@y\r\n\r\n")


def test_text_part_starting_with_key_value_lines_keeps_its_body() -> None:
    raw = (b"From: a@example.org\r\nSubject: feed\r\nContent-Type: text/plain\r\n\r\n"
           b"URL: http://news.example/item\r\nDate: Tue, 24 Sep 2002 15:05:13 GMT\r\n\r\n"
           b"The story itself.\r\n")
    with unpack(raw) as result:
        leaves = [p for p in result.parts if p.index != 1]
    assert [p.detected_type for p in leaves] == ["asc"]
    assert leaves[0].text.startswith("URL: http://news.example/item")

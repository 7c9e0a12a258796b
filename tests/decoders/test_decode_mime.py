"""MIME decoding: structure, transfer encodings, file names, text, damaged input."""

from __future__ import annotations

from pathlib import Path

import pytest

from decoders import unpack
from tests.decoders.builders import message, nested_rfc822

MIME = Path(__file__).resolve().parents[2] / "corpora" / "mime"


def load(name: str) -> bytes:
    return (MIME / name).read_bytes()


def test_nested_multipart_is_flattened_with_levels() -> None:
    with unpack(load("nested-multipart.eml")) as result:
        levels = [p.level for p in result.parts]
        assert levels[:6] == [(1,), (1, 1), (1, 2), (1, 3), (1, 4), (1, 5)]
        assert result.parts[0].headers[0] == ("From", "Alice <alice@example.org>")
        assert ("Subject", "Report Übersicht") in result.parts[0].headers


def test_quoted_printable_and_charset() -> None:
    with unpack(load("nested-multipart.eml")) as result:
        assert result.parts[1].text == "Grüße aus dem Lager."
        assert result.parts[1].declared_type == "text/plain"


def test_html_yields_visible_text_only() -> None:
    with unpack(load("nested-multipart.eml")) as result:
        html = result.parts[2]
        assert html.plain_text is None and "<" in (html.html or "")  # not rendered yet
        assert html.text == "Hello warehouse"
        assert html.plain_text == "Hello warehouse" and html.html is None  # rendered once
        assert html.detected_type == "html"


def test_rfc2231_and_rfc2047_names() -> None:
    with unpack(load("nested-multipart.eml")) as result:
        names = [p.name for p in result.parts]
        assert "übersicht.txt" in names
        assert "résumé.pdf.exe" in names
        assert result.parts[3].data() == b"Stock list\n"


def test_uuencode_inside_text_part() -> None:
    with unpack(load("nested-multipart.eml")) as result:
        uu = [p for p in result.parts if p.name == "tool.txt"]
        assert len(uu) == 1 and uu[0].data() == b"hello"
        assert uu[0].level == (1, 5, 1)


def test_bad_base64_is_decoded_leniently() -> None:
    with unpack(load("bad-base64.eml")) as result:
        assert result.parts[1].data() == b"Hello world"
        assert "DECODE_FAIL" not in result.symbols()


def test_unterminated_multipart_keeps_last_part() -> None:
    with unpack(load("unterminated-multipart.eml")) as result:
        assert [p.text for p in result.parts[1:]] == ["first part", "second part never closed\n"]


def test_headers_only_message() -> None:
    with unpack(load("headers-only.eml")) as result:
        assert result.parts[0].headers[0][0] == "Subject"
        assert result.parts[1].size == 0


def test_base64_attachment_bytes_and_path_string() -> None:
    payload = bytes(range(256)) * 10
    with unpack(message(("foto.bin", payload))) as result:
        att = result.parts[2]
        assert att.data() == payload
        assert att.path_string() == "P=p003,L=1/2,M=application/octet-stream,T=dat,N=foto.bin"
        assert att.parent == 1


def test_nested_message_is_its_own_level() -> None:
    with unpack(nested_rfc822(3)) as result:
        mails = [p for p in result.parts if p.detected_type == "mail"]
        assert [p.depth for p in mails] == [1, 2, 3]
        assert mails[1].declared_type == "message/rfc822"
        assert ("Subject", "level 2") in mails[1].headers


def test_empty_and_garbage_input_never_raise() -> None:
    for raw in (b"", b"\0" * 100, b"--\n--\n", b"Content-Type: multipart/mixed\n\n--x\n"):
        with unpack(raw) as result:
            assert result.parts[0].index == 1
            assert "DECODE_FAIL" not in result.symbols()


def _two_readings(content_type: bytes, extra_headers: bytes = b"") -> bytes:
    """Parts under boundary "a" look harmless; under "b" an executable hides."""
    return (b"From: x@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: " + content_type + b"\r\n" + extra_headers + b"\r\n"
            b"--a\r\nContent-Type: text/plain\r\n\r\nharmless\r\n"
            b"--b\r\nContent-Type: application/octet-stream\r\n"
            b'Content-Disposition: attachment; filename="run.exe"\r\n\r\nMZ payload\r\n'
            b"--b--\r\n--a--\r\n")


def test_conflicting_boundary_parameters_make_the_message_unchecked() -> None:
    # CVE-2024-28054: mail clients take the first boundary, MIME-tools the last
    raw = _two_readings(b'multipart/mixed; boundary="a"; boundary="b"')
    with unpack(raw) as result:
        hits = [h for h in result.hits if h.symbol == "MIME_AMBIGUOUS"]
        assert len(hits) == 1 and hits[0].options == ("2 different boundary parameters",)
        assert hits[0].part == result.parts[0].path_string()
        assert result.unchecked


def test_repeated_content_type_or_encoding_headers_are_ambiguous() -> None:
    raw = _two_readings(b'multipart/mixed; boundary="a"',
                        b'Content-Type: multipart/mixed; boundary="b"\r\n')
    with unpack(raw) as result:
        assert [h.options for h in result.hits if h.symbol == "MIME_AMBIGUOUS"] == [
            ("2 different content-type headers",)]
        assert result.unchecked
    nested = (b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
              b"Content-Type: application/octet-stream\r\n"
              b"Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
              b"TVogcGF5bG9hZA==\r\n--z--\r\n")
    with unpack(nested) as result:
        assert [h.options for h in result.hits if h.symbol == "MIME_AMBIGUOUS"] == [
            ("2 different content-transfer-encoding headers",)]


def test_repeating_the_same_value_is_not_ambiguous() -> None:
    raw = _two_readings(b'multipart/mixed; boundary="a"; boundary=a',
                        b'Content-Type: multipart/mixed;  boundary="a"\r\n')
    with unpack(raw) as result:
        assert "MIME_AMBIGUOUS" not in result.symbols()
        assert not result.unchecked
    for path in sorted(MIME.glob("*.eml")):
        with unpack(path.read_bytes()) as result:
            ambiguous = "MIME_AMBIGUOUS" in result.symbols()
            expected = path.name in ("ambiguous-boundary.eml", "multipart-base64.eml")
            assert ambiguous == expected, path.name


def test_the_corpus_example_shows_both_readings() -> None:
    with unpack(load("ambiguous-boundary.eml")) as result:
        assert result.unchecked
        # this decoder follows the first boundary, as mail clients do: the attachment
        # is found and the banned-file rules can see it
        assert any(p.name == "invoice.pdf.exe" for p in result.parts)


def test_huge_encoded_word_header_is_decoded_in_its_first_16_kib_only() -> None:
    # email.header.decode_header is quadratic in encoded words: a 1 MB filename made of
    # them took 3 s per read (three reads per part); only the start is decoded now
    from decoders.mimeutil import MAX_DECODED_HEADER, decode_words
    from scanner.ml.charsets import decode_header_value

    value = "=?utf-8?q?=C3=A4?= " * (1_000_000 // 19)
    head, tail = value[:MAX_DECODED_HEADER], value[MAX_DECODED_HEADER:]
    assert decode_words(value) == decode_words(head) + tail
    assert decode_words(head).startswith("ää")
    assert decode_header_value(value).startswith("ää")
    assert decode_header_value(value).endswith("=?utf-8?q?=C3=A4?=")
    raw = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment;"
           b' filename="' + value.encode() + b'"\r\n\r\nx\r\n--b--\r\n')
    with unpack(raw) as result:
        assert result.parts[-1].name and result.parts[-1].name.startswith("ää")


def _attachment(cte: str, body: bytes) -> bytes:
    return (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + body + b"\r\n--B--\r\n")


def test_base64_padding_in_the_middle_does_not_end_the_data() -> None:
    # each piece encoded on its own: binascii stopped after "M", hiding the rest
    import base64

    from tests.decoders.builders import pe_exe

    exe = pe_exe()
    body = base64.b64encode(exe[:1]) + b"\r\n" + base64.b64encode(exe[1:])
    with unpack(_attachment("base64", body)) as result:
        assert result.parts[1].data() == exe
        assert result.parts[1].detected_type == "exe-ms"


@pytest.mark.parametrize("cte", ['"base64"', "base64 (sent by x)", " BASE64 "])
def test_transfer_encoding_with_quotes_or_comments(cte: str) -> None:
    import base64

    with unpack(_attachment(cte, base64.b64encode(b"hello world"))) as result:
        assert result.parts[1].data() == b"hello world"


def test_multiparts_nested_past_the_walk_limit_are_a_depth_limit() -> None:
    # 70 nested multiparts: the walk stopped at 64 and kept the rest as one
    # undecoded leaf, so the attachment at the bottom was never seen, and no limit said so
    from decoders.mime import MAX_NESTING

    body = (b'Content-Type: application/octet-stream; name="setup.exe"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n")
    for i in range(MAX_NESTING + 6):
        b = b"L%d" % i
        body = (b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b
                + b"\r\n" + body + b"\r\n--" + b + b"--\r\n")
    with unpack(b"From: a@example.org\r\n" + body) as result:
        assert "DECODE_LIMIT_DEPTH" in result.symbols()
        assert result.unchecked


def test_multipart_without_boundary_is_split_on_its_first_delimiter() -> None:
    raw = (b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n"
           b"--X\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
           b'--X\r\nContent-Type: application/octet-stream; name="setup.exe"\r\n'
           b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--X--\r\n")
    with unpack(raw) as result:
        assert [p.name for p in result.parts] == [None, None, "setup.exe"]
        assert result.parts[2].data() == b"hello"
        assert "MIME_AMBIGUOUS" in result.symbols() and result.unchecked


def test_a_single_part_messages_fields_are_decoded_once(monkeypatch) -> None:
    """The message and its one body part share a header section; each field's encoded
    words were decoded twice (10,000 fields took a second in the decoder alone)."""
    from decoders import mimeutil

    calls = 0
    decode_words = mimeutil.decode_words

    def counted(value: str) -> str:
        nonlocal calls
        calls += 1
        return decode_words(value)

    monkeypatch.setattr(mimeutil, "decode_words", counted)
    fields = b"".join(b"X-S: =?utf-8?q?s=C3=A9_%d?=\n" % i for i in range(1000))
    raw = b"From: a@example.org\nSubject: t\n" + fields + b"\nbody\n"
    with unpack(raw) as result:
        assert [len(p.headers) for p in result.parts] == [1002, 1002]
        assert result.parts[1].headers[5] == ("X-S", "sé 3")
    assert calls == 1002

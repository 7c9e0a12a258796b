"""What a mail reader shows against what the checks see: text and attachments of
damaged or unusual MIME structure reach the part tree and the rules' body view."""

from __future__ import annotations

from pathlib import Path

from decoders import unpack
from scanner.rules.views import MessageView

MIME = Path(__file__).resolve().parents[2] / "corpora" / "mime"


def load(name: str) -> bytes:
    return (MIME / name).read_bytes()


def body_of(raw: bytes) -> bytes:
    """The rules' body view over the decoders' part tree, Subject line left out."""
    with unpack(raw) as result:
        return b"".join(MessageView(raw, result.parts).body[1:])


def test_multipart_whose_boundary_never_occurs_is_read_as_text() -> None:
    # the SpamAssassin corpus's spam 00467: boundary="=Multipart Boundary ..." but the
    # lines read "--= Multipart Boundary ...": no part came out, rules and URIBL saw no
    # word, while Python's email (and webmail) show the whole body as text
    raw = load("boundary-never-occurs.eml")
    with unpack(raw) as result:
        leaf = result.parts[1]
        assert "unsplit-multipart" in leaf.flags
        assert "http://rates.example.net/apply" in (leaf.text or "")
        assert not result.unchecked
    assert b"Refinance today" in body_of(raw)


def test_multipart_without_any_delimiter_line_is_text() -> None:
    raw = (b"From: a@example.org\nSubject: s\nContent-Type: multipart/mixed\n\n"
           b"Cheap pills at http://pills.example.net/\n")
    assert b"Cheap pills" in body_of(raw)


def test_standard_library_walk_reads_an_unsplit_multipart_as_text() -> None:
    # without a part tree the view walks the message itself: same reading
    raw = load("boundary-never-occurs.eml")
    assert b"Refinance today" in b"".join(MessageView(raw).body)


def test_content_type_without_semicolon_is_its_leading_type() -> None:
    # the corpus's spam_2 00204: "TEXT/PLAIN charset=US-ASCII" was taken as the type
    # "text/plain charset=us-ascii", which is no text type: no text was read
    raw = (b"From: a@example.org\nSubject: s\nMIME-Version: 1.0\n"
           b"Content-Type: TEXT/PLAIN charset=US-ASCII\n\nRomanian software export offer\n")
    with unpack(raw) as result:
        assert result.parts[1].declared_type == "text/plain"
        assert result.parts[1].text == "Romanian software export offer\n"
    assert b"Romanian software" in body_of(raw)


def test_base64_encoded_multipart_shows_its_attachment_and_is_ambiguous() -> None:
    # RFC 2045 forbids encoding a multipart; readers that decode it first see
    # invoice.pdf.exe, Python's email shows base64 text: the banned rules must see the
    # name, and the readings differ, so the message is UNCHECKED
    with unpack(load("multipart-base64.eml")) as result:
        assert "invoice.pdf.exe" in [p.name for p in result.parts]
        assert result.parts[1].text == "The invoice is attached."
        assert "MIME_AMBIGUOUS" in result.symbols() and result.unchecked


def test_part_without_header_separator_keeps_its_text() -> None:
    # a body part starting with a line that is no header field (no empty line after
    # the delimiter): Python's email shows that line and the rest as the part's text;
    # we took every line up to the next delimiter for headers and saw nothing
    raw = load("part-without-separator.eml")
    with unpack(raw) as result:
        texts = [p.text for p in result.parts]
        assert any(t and "http://notes.example.net/today" in t for t in texts)
    assert b"minutes of the meeting" in body_of(raw)


def test_nested_message_with_a_broken_header_line_keeps_the_rest_as_text() -> None:
    raw = (b"From: a@example.org\nSubject: s\nContent-Type: message/rfc822\n\n"
           b"Subject: inner\nthis line ends the header section\n\ninner words\n")
    with unpack(raw) as result:
        assert "this line ends the header section" in (result.parts[2].text or "")


def test_utf7_body_is_decoded_for_the_rules() -> None:
    # "+AHYAaQBhAGcAcgBh-" is "viagra" in UTF-7: body rules saw only base64 runs
    raw = (b"From: a@example.org\nSubject: s\nContent-Type: text/plain; charset=utf-7\n\n"
           b"Buy +AHYAaQBhAGcAcgBh- now\n")
    assert b"Buy viagra now" in body_of(raw)


def test_utf16_html_body_is_decoded_for_the_rules() -> None:
    html = "<p>Claim your prize</p>".encode("utf-16")
    raw = (b"From: a@example.org\nSubject: s\nContent-Type: text/html; charset=UTF-16\n"
           b"Content-Transfer-Encoding: binary\n\n" + html)
    assert b"Claim your prize" in body_of(raw)


def test_white_space_before_a_field_colon_still_names_the_attachment() -> None:
    # "Content-Type : ...; name=evil.exe": Thunderbird (and Postfix) read the field,
    # Python's parser ended the header section there and dropped it and every field
    # after it, so the banned rules never saw the name and the base64 stayed encoded
    raw = (b"From: a@example.org\nSubject: s\nMIME-Version: 1.0\n"
           b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
           b'see attachment\n--b\nContent-Type : application/octet-stream; name="evil.exe"\n'
           b'Content-Disposition : attachment; filename="evil.exe"\n'
           b"Content-Transfer-Encoding : base64\n\naGVsbG8=\n--b--\n")
    with unpack(raw) as result:
        exe = [p for p in result.parts if p.name == "evil.exe"]
        assert len(exe) == 1 and exe[0].data() == b"hello"
        assert exe[0].declared_type == "application/octet-stream"


def test_codec_that_is_no_charset_falls_back_to_the_default() -> None:
    # charset=base64 (or zlib, hex, rot13) named a Python codec that is no text
    # encoding: decoding raised, the part was lost (DECODE_FAIL, UNCHECKED) and rules
    # saw no word, while a client shows the text in its default charset
    for charset in (b"base64", b"zlib", b"hex", b"rot13"):
        raw = (b"From: a@example.org\nSubject: s\nContent-Type: text/plain; charset="
               + charset + b"\n\nhello words\n")
        with unpack(raw) as result:
            assert result.parts[1].text == "hello words\n", charset
            assert not result.unchecked
        assert b"hello words" in body_of(raw)


def test_gb2312_declared_gbk_written_is_read_as_gbk() -> None:
    # "\x81\x40" exists in GBK (Thunderbird reads GB2312 as GBK), not in GB2312
    raw = (b"From: a@example.org\nSubject: s\nContent-Type: text/plain; charset=GB2312\n\n"
           b"\x81\x40\xe4\xf9\n")
    with unpack(raw) as result:
        assert result.parts[1].text == "\u4e02\u6f8c\n"


def test_nested_boundary_that_clashes_with_the_enclosing_one_is_ambiguous() -> None:
    # inner boundary "abc--" inside outer "abc": the inner separator "--abc--" is the
    # outer close delimiter. Thunderbird gives the line to the open inner multipart and
    # shows its text and evil.exe; Python's email and our splitter close the outer one
    # there and see neither: the readings differ, so the message cannot pass as checked
    raw = (b"From: a@example.org\nSubject: s\nMIME-Version: 1.0\n"
           b'Content-Type: multipart/mixed; boundary="abc"\n\n--abc\n'
           b'Content-Type: multipart/mixed; boundary="abc--"\n\n--abc--\n'
           b"Content-Type: text/plain\n\ninner text\n--abc--\n"
           b'Content-Type: application/octet-stream; name="evil.exe"\n'
           b"Content-Transfer-Encoding: base64\n\naGVsbG8=\n--abc----\n--abc--\n")
    with unpack(raw) as result:
        assert "MIME_AMBIGUOUS" in result.symbols() and result.unchecked
    for inner in (b"abc", b"ab"):  # the same boundary again; one the outer is inner--
        outer = b"abc" if inner == b"abc" else b"ab--"
        raw = (b"From: a@example.org\nSubject: s\nContent-Type: multipart/mixed; boundary=\""
               + outer + b'"\n\n--' + outer + b"\nContent-Type: multipart/mixed; boundary=\""
               + inner + b'"\n\n--' + inner + b"\nContent-Type: text/plain\n\nx\n--" + outer
               + b"--\n")
        with unpack(raw) as result:
            assert "MIME_AMBIGUOUS" in result.symbols(), inner


def test_fields_after_a_line_that_is_no_field_name_the_attachment() -> None:
    # an 8-bit field name ends the header section for Python's email (the rest is
    # text), while Thunderbird reads every line up to the empty line as fields and
    # offers evil.exe: the name must reach the banned rules, and the readings differ
    raw = (b"From: a@example.org\nSubject: s\nMIME-Version: 1.0\n"
           b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
           b"see attachment\n--b\nX-\xff: junk\n"
           b'Content-Type: application/octet-stream; name="evil.exe"\n'
           b"Content-Transfer-Encoding: base64\n\naGVsbG8=\n--b--\n")
    with unpack(raw) as result:
        exe = [p for p in result.parts if p.name == "evil.exe"]
        assert len(exe) == 1 and exe[0].data() == b"hello"
        assert "MIME_AMBIGUOUS" in result.symbols() and result.unchecked


def test_a_broken_fold_of_an_ordinary_field_is_not_ambiguous() -> None:
    # a long Subject folded without indentation (old or broken mailers): the readers
    # differ only on whether "Date:" is a field; no Content-* field follows, so nothing
    # about the message's structure is in doubt and it is not made UNCHECKED
    raw = (b"From: a@example.org\nSubject: a long subject\nthat was folded badly\n"
           b"Date: Sun, 6 Dec 2026 07:00:00 +0000\n\nthe body text\n")
    with unpack(raw) as result:
        assert "MIME_AMBIGUOUS" not in result.symbols() and not result.unchecked
    assert b"the body text" in body_of(raw)

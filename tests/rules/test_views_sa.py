"""The body, rawbody and header views as SpamAssassin 4 builds them (found by
scripts/body_differential.py): charset normalisation to UTF-8, Perl's white space,
encoded words, and text parts that look like messages."""

from __future__ import annotations

import base64

from scanner.rules.views import MessageView
from scanner.testing.tasks import task_from_bytes

from .helpers import message, names, ruleset, run


def _head(subject: bytes = b"hi", ctype: bytes = b"text/plain; charset=us-ascii") -> bytes:
    return (b"From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: " + subject +
            b"\nMessage-ID: <1@example.org>\nContent-Type: " + ctype + b"\n\n")


def test_body_of_a_latin1_part_is_utf8() -> None:
    rs = ruleset(r"""
body B_CAFE   /caf\xc3\xa9 \xc2\xa3100/
body B_OCTETS /caf\xe9/
""")
    raw = _head(ctype=b"text/plain; charset=iso-8859-1") + b"caf\xe9 \xa3100\n"
    assert names(run(rs, raw)) == {"B_CAFE"}


def test_body_of_a_cyrillic_part_is_decoded_by_its_charset() -> None:
    rs = ruleset(r"body B_PRIVET /\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82/")
    raw = _head(ctype=b"text/plain; charset=windows-1251") + "привет\n".encode("cp1251")
    assert names(run(rs, raw)) == {"B_PRIVET"}


def test_body_of_valid_utf8_declared_latin1_stays_utf8() -> None:
    rs = ruleset(r"body B_EURO /\xe2\x82\xac5/")
    raw = _head(ctype=b"text/plain; charset=iso-8859-1") + "€5\n".encode()
    assert names(run(rs, raw)) == {"B_EURO"}


def test_html_entities_in_an_ascii_part_are_utf8_with_a_wide_one() -> None:
    rs = ruleset(r"body B_ENT /caf\xc3\xa9 \xe2\x82\xac5/")
    raw = message(body="<p>caf&eacute; &euro;5</p>\n", ctype="text/html; charset=us-ascii")
    assert names(run(rs, raw)) == {"B_ENT"}


def test_nbsp_octet_in_latin1_text_is_white_space() -> None:
    rs = ruleset(r"body B_SPACE /win a prize/")
    raw = _head(ctype=b"text/plain; charset=iso-8859-1") + b"win\xa0a\xa0prize \xe9\n"
    assert names(run(rs, raw)) == {"B_SPACE"}


def test_file_separator_is_not_white_space() -> None:
    # Perl's \s does not take \x1c-\x1f; Python's does
    rs = ruleset(r"body B_FS /a\x1cb/")
    raw = _head(ctype=b"text/plain; charset=utf-8") + "a\x1cb \u00e9\n".encode()
    assert names(run(rs, raw)) == {"B_FS"}


def test_raw_8bit_header_is_read_as_windows_1252() -> None:
    rs = ruleset(r"""
header H_POUND  Subject =~ /^\xc2\xa3100 \xe2\x80\x9cnow\xe2\x80\x9d$/
header H_NAME   From:name =~ /^J\xc3\xb6rg$/
header H_UTF8   To =~ /^J\xc3\xb6rg </
""")
    raw = _head(subject=b"\xa3100 \x93now\x94").replace(
        b"From: Alice", b"From: J\xf6rg").replace(b"To: bob", "To: Jörg <bob".encode()) \
        .replace(b"example.net\n", b"example.net>\n")
    assert names(run(rs, raw)) == {"H_POUND", "H_NAME", "H_UTF8"}


def test_iso_8859_1_encoded_word_is_read_as_windows_1252() -> None:
    rs = ruleset(r"header H_QUOTES Subject =~ /^\xe2\x80\x9chi\xe2\x80\x9d$/")
    raw = _head(subject=b"=?iso-8859-1?q?=93hi=94?=")
    assert names(run(rs, raw)) == {"H_QUOTES"}


def test_text_part_that_looks_like_a_message_stays_text() -> None:
    raw = _head() + (b"From: Steve Speer\nSubject: http://example.com/news.html\n\n"
                     b"not sure what the rules are\n")
    with task_from_bytes(raw) as task:
        view = MessageView(raw, task.parts)
        body = b"".join(view.body)
        rawbody = b"".join(view.rawbody)
    assert b"From: Steve Speer Subject: http://example.com/news.html" in body
    assert rawbody.startswith(b"From: Steve Speer\nSubject:")
    assert b"not sure what the rules are" in body


def test_attached_message_is_still_read_as_a_message() -> None:
    inner = b"From: x@example.org\nSubject: inner\n\ninner text\n"
    raw = _head(ctype=b'multipart/mixed; boundary="b"') + (
        b"--b\nContent-Type: text/plain\n\nouter text\n"
        b"--b\nContent-Type: message/rfc822\n\n" + inner + b"--b--\n")
    with task_from_bytes(raw) as task:
        body = b"".join(MessageView(raw, task.parts).body)
    assert b"outer text" in body and b"inner text" in body
    assert b"From: x@example.org" not in body


def test_rawbody_reads_a_part_named_html_whatever_its_type() -> None:
    rs = ruleset(r"rawbody R_HTML /<p>html by name<\/p>/")
    raw = _head(ctype=b'multipart/mixed; boundary="b"') + (
        b"--b\nContent-Type: text/plain\n\nmain text\n"
        b'--b\nContent-Type: application/octet-stream; name="page.html"\n\n'
        b"<p>html by name</p>\n--b--\n")
    assert names(run(rs, raw)) == {"R_HTML"}


def test_entities_of_an_ascii_body_stay_latin1_octets() -> None:
    # Perl keeps the text as octets while no character is above U+00FF
    rs = ruleset(r"body B_LATIN /\xa92002 one two \x96 dash \x96 hex \xe9t\xe9/")
    html = "<p>&copy;2002 one&nbsp;two &#150; dash &#x96; hex &eacute;t&eacute;</p>\n"
    assert names(run(rs, message(body=html, ctype="text/html; charset=us-ascii"))) == \
        {"B_LATIN"}


def test_c1_references_are_c1_characters_in_a_utf8_body() -> None:
    rs = ruleset(r"body B_C1 /\xc2\x96 \xe2\x82\xac/")
    html = "<p>&#150; &euro;</p>\n"
    assert names(run(rs, message(body=html, ctype="text/html; charset=us-ascii"))) == {"B_C1"}


def test_body_without_content_type_that_looks_like_a_message_stays_text() -> None:
    raw = (b"From: a@example.org\nTo: b@example.net\nSubject: advisory\n\n"
           b"Severity: Security\nReferences: CAN-2002-0989\n\nGaim is a messaging client\n")
    with task_from_bytes(raw) as task:
        body = b"".join(MessageView(raw, task.parts).body)
    assert b"Severity: Security References: CAN-2002-0989" in body
    assert b"Gaim is a messaging client" in body


def test_digest_part_without_content_type_is_still_a_message() -> None:
    raw = _head(ctype=b'multipart/digest; boundary="d"') + (
        b"--d\n\nFrom: x@example.org\nSubject: one\n\ndigest text\n--d--\n")
    with task_from_bytes(raw) as task:
        body = b"".join(MessageView(raw, task.parts).body)
    assert b"digest text" in body
    assert b"From: x@example.org" not in body


def test_curly_double_quotes_in_html_are_ascii_quotes() -> None:
    rs = ruleset(r'body B_FREE /so-called "FREE" money/')
    raw = _head(ctype=b"text/html; charset=iso-8859-1") + \
        b"<p>so-called \x93FREE\x94 money</p>\n"
    assert names(run(rs, raw)) == {"B_FREE"}


def test_nbsp_without_semicolon_stays_in_an_ascii_body() -> None:
    rs = ruleset(r"body B_NBSP /Unsubscribe\xa0\|\xa0Manage \| FAQ/")
    html = "<p>Unsubscribe&nbsp|&#160;Manage&nbsp;|&nbsp;FAQ</p>\n"
    assert names(run(rs, message(body=html, ctype="text/html; charset=us-ascii"))) == \
        {"B_NBSP"}


def test_iframe_and_textarea_content_is_literal_text() -> None:
    rs = ruleset(r"""
body B_IFRAME /before<script src="http:\/\/ads\.example\/js"> <\/script> <b>fallback<\/b>/
body B_AREA   /<p>typed<\/p>/
""")
    html = ('before<iframe src="http://frame.example/"><script src="http://ads.example/js">'
            "\n</script> <b>fallback</b></iframe><textarea><p>typed</p></textarea>\n")
    assert names(run(rs, message(body=html, ctype="text/html; charset=us-ascii"))) == \
        {"B_IFRAME", "B_AREA"}


def test_other_text_types_are_body_text_but_vcard_and_calendar() -> None:
    rs = ruleset(r"""
body B_ENRICHED /enriched part/
body B_HEADERS  /Received: from x/
body B_VCARD    /vcard part/
body B_CAL      /calendar part/
""")
    raw = _head(ctype=b'multipart/mixed; boundary="b"') + (
        b"--b\nContent-Type: text/enriched\n\nenriched part\n"
        b"--b\nContent-Type: text/x-vcard\n\nvcard part\n"
        b"--b\nContent-Type: text/calendar\n\ncalendar part\n"
        b"--b\nContent-Type: text/rfc822-headers\n\nReceived: from x\n--b--\n")
    assert names(run(rs, raw)) == {"B_ENRICHED", "B_HEADERS"}


def test_stray_equals_signs_in_quoted_printable_stay() -> None:
    raw = _head(ctype=b"text/plain; charset=us-ascii").replace(
        b"\n\n", b"\nContent-Transfer-Encoding: quoted-printable\n\n", 1) + (
        b"UNCOVERED\n===============\n=3D==3D==3D end caf=3D=\nsoft\n")
    with task_from_bytes(raw) as task:
        rawbody = b"".join(MessageView(raw, task.parts).rawbody)
    # "=\n" is a soft line break even after "="s: 19 "="s, as SpamAssassin decodes it
    assert rawbody == b"UNCOVERED\n" + b"=" * 19 + b" end caf=soft\n"


def test_soft_line_break_after_a_stray_equals_sign_joins_an_escape() -> None:
    raw = _head().replace(b"\n\n", b"\nContent-Transfer-Encoding: quoted-printable\n\n", 1) + \
        b'<embed src=3D"x.cab#version==\n3D5,0,0,0">\n'
    with task_from_bytes(raw) as task:
        rawbody = b"".join(MessageView(raw, task.parts).rawbody)
    assert rawbody == b'<embed src="x.cab#version=5,0,0,0">\n'


def test_equals_sign_before_a_blank_line_is_a_soft_break_only_once() -> None:
    raw = _head().replace(b"\n\n", b"\nContent-Transfer-Encoding: quoted-printable\n\n", 1) + \
        b"=====\n \nThe staff\n"
    with task_from_bytes(raw) as task:
        rawbody = b"".join(MessageView(raw, task.parts).rawbody)
    assert rawbody == b"====\nThe staff\n"


def test_gb2312_declared_gbk_written_is_read_as_the_decoders_read_it() -> None:
    # "镕" is in GBK, not in GB2312: a strict GB2312 decode fails and the whole part was
    # read as Windows-1252; the charset label is read as the decoders read it (GB18030)
    text = "优惠 镕 促销"
    rs = ruleset(r"body B_PROMO /\xe4\xbf\x83\xe9\x94\x80/")
    raw = _head(ctype=b"text/plain; charset=gb2312") + text.encode("gbk") + b"\n"
    assert names(run(rs, raw)) == {"B_PROMO"}


def test_utf16_part_and_encoded_word_without_bom_are_read_big_endian() -> None:
    # RFC 2781 4.3 and SpamAssassin's detect_utf16 agree: big-endian; Python's utf-16
    # codec read them little-endian, and no rule saw a word of them
    rs = ruleset(r"""
body   B_BUY   /buy now/
uri    U_EX    /^http:\/\/example\.com\/buy$/
header H_PILLS Subject =~ /^Cheap pills$/
""")
    subject = b"=?utf-16?B?" + base64.b64encode("Cheap pills".encode("utf-16-be")) + b"?="
    raw = _head(subject=subject, ctype=b"text/plain; charset=UTF-16") + \
        "Visit http://example.com/buy now\n".encode("utf-16-be")
    assert names(run(rs, raw)) == {"B_BUY", "U_EX", "H_PILLS"}


def test_utf16_little_endian_without_bom_is_recognised_by_its_nuls() -> None:
    rs = ruleset(r"body B_BUY /buy now/")
    raw = _head(ctype=b"text/plain; charset=utf-16") + "buy now\n".encode("utf-16-le")
    assert names(run(rs, raw)) == {"B_BUY"}


def test_all_external_starts_at_the_first_external_received_header() -> None:
    """SpamAssassin's ALL-EXTERNAL/ALL-UNTRUSTED: every header line from the first
    untrusted Received header on; ALL-TRUSTED: down to it (inclusive)."""
    raw = (b"Received: from localhost (localhost [127.0.0.1]) by mx.example (Postfix) "
           b"with ESMTP id AAA1\nX-Top: 1\n"
           b"Received: from out.example (out.example [198.51.100.2]) by localhost "
           b"(Postfix) with ESMTP id BBB2\nX-Mid: 2\n"
           b"Received: from mail pickup service by out.example with Microsoft SMTPSVC\n"
           b"Subject: s\n\nbody\n")
    view = MessageView(raw)
    external = view.header("ALL-EXTERNAL")
    assert external[0].startswith(b"Received: from out.example") and len(external) == 4
    assert view.header("ALL-UNTRUSTED") == external
    assert [line.split(b":")[0] for line in view.header("ALL-TRUSTED")] == [
        b"Received", b"X-Top", b"Received"]
    assert view.header("ALL-EXTERNAL:raw")[1] == b"X-Mid: 2\n"

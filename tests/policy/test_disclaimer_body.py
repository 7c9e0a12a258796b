"""The disclaimer body edit (scanner.actions.disclaimer_body): each transfer encoding,
charset and structure, signed and encrypted mail untouched, bare-LF messages, and every
byte outside the edited part kept."""

from __future__ import annotations

import base64
import email
from email.message import Message
from email.policy import compat32

import pytest

from scanner.actions.disclaimer_body import MAX_PART, Untouched, add_disclaimer

TEXT = "Confidential: meant for the addressee only.\n"
HTML = "<p>Confidential: meant for the addressee only.</p>"
HEAD = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: hello\r\nMIME-Version: 1.0\r\n"


def single(ctype: bytes, cte: bytes, body: bytes) -> bytes:
    return (HEAD + b"Content-Type: " + ctype + b"\r\nContent-Transfer-Encoding: " + cte
            + b"\r\n\r\n" + body)


def texts(raw: bytes) -> dict[str, str]:
    """Each leaf's decoded text by type (the first of each), as a mail client reads it."""
    out: dict[str, str] = {}
    for part in email.message_from_bytes(raw, policy=compat32).walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            out.setdefault(part.get_content_type(),
                           payload.decode(part.get_content_charset() or "us-ascii"))
    return out


def head_of(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=compat32)


def test_7bit_plain_gets_the_text_after_a_blank_line_and_keeps_its_bytes() -> None:
    raw = single(b"text/plain; charset=us-ascii", b"7bit", b"Hi Bob,\r\nsee you.\r\n")
    out = add_disclaimer(raw, TEXT, "")
    assert out == raw + b"\r\nConfidential: meant for the addressee only.\r\n"


def test_8bit_latin1_part_writes_the_disclaimer_in_latin1() -> None:
    raw = single(b"text/plain; charset=iso-8859-1", b"8bit", "Grüße\r\n".encode("latin-1"))
    out = add_disclaimer(raw, "Vertraulich: nur für den Empfänger.\n", "")
    assert out.startswith(raw)
    assert texts(out)["text/plain"] == "Grüße\r\n\r\nVertraulich: nur für den Empfänger.\r\n"
    assert head_of(out).get_content_charset() == "iso-8859-1"


def test_a_disclaimer_the_charset_cannot_hold_switches_the_part_to_utf8() -> None:
    raw = single(b"text/plain; charset=iso-8859-1", b"8bit", "Grüße\r\n".encode("latin-1"))
    out = add_disclaimer(raw, "Конфиденциально €\n", "")
    assert head_of(out).get_content_charset() == "utf-8"
    assert texts(out)["text/plain"] == "Grüße\r\n\r\nКонфиденциально €\r\n"
    assert out.startswith(HEAD)  # the other fields unchanged


def test_a_7bit_part_that_needs_8bit_bytes_becomes_quoted_printable() -> None:
    raw = single(b"text/plain", b"7bit", b"Hello\r\n")
    out = add_disclaimer(raw, "Vertraulich für Sie\n", "")
    head = head_of(out)
    assert head["Content-Transfer-Encoding"] == "quoted-printable"
    assert head.get_content_charset() == "utf-8"
    assert out.isascii()
    assert texts(out)["text/plain"] == "Hello\r\n\r\nVertraulich für Sie\r\n"


def test_quoted_printable_keeps_the_original_encoded_bytes() -> None:
    body = b"Gr=C3=BC=C3=9Fe, a long line that was wrapped by the sender at seventy-si=\r\nx.\r\n"
    raw = single(b"text/plain; charset=utf-8", b"quoted-printable", body)
    out = add_disclaimer(raw, "Vertraulich für Sie\n", "")
    assert out.startswith(raw)
    assert texts(out)["text/plain"] == ("Grüße, a long line that was wrapped by the sender "
                                        "at seventy-six.\r\n\r\nVertraulich für Sie\r\n")


def test_base64_is_encoded_again_with_the_disclaimer() -> None:
    encoded = base64.encodebytes("Grüße aus Köln\r\n".encode()).replace(b"\n", b"\r\n")
    raw = single(b"text/plain; charset=utf-8", b"base64", encoded)
    out = add_disclaimer(raw, TEXT, "")
    assert texts(out)["text/plain"] == ("Grüße aus Köln\r\n\r\nConfidential: meant for the "
                                        "addressee only.\r\n")
    assert all(len(line) <= 76 for line in out.split(b"\r\n\r\n", 1)[1].split(b"\r\n"))


def test_html_goes_before_the_closing_body_tag() -> None:
    raw = single(b"text/html; charset=utf-8", b"8bit",
                 "<html><body><p>Grüße</p></body></html>\r\n".encode())
    out = add_disclaimer(raw, TEXT, HTML)
    assert texts(out)["text/html"] == f"<html><body><p>Grüße</p>{HTML}\r\n</body></html>\r\n"


def test_html_without_a_body_tag_gets_it_at_the_end_and_text_only_config_is_escaped() -> None:
    raw = single(b"text/html; charset=us-ascii", b"7bit", b"<b>hi</b>\r\n")
    out = add_disclaimer(raw, "Mind <this> & that\n", "")
    assert texts(out)["text/html"] == "<b>hi</b>\r\n\r\n<p>Mind &lt;this&gt; &amp; that</p>\r\n"


def test_quoted_printable_html_mid_line_gets_a_soft_break_first() -> None:
    raw = single(b"text/html; charset=utf-8", b"quoted-printable",
                 b"<html><body>Gr=C3=BC=C3=9Fe</body></html>\r\n")
    out = add_disclaimer(raw, TEXT, "<p>Vertraulich</p>")
    assert texts(out)["text/html"] == "<html><body>Grüße<p>Vertraulich</p>\r\n</body></html>\r\n"
    assert out.startswith(raw[:raw.index(b"</body>")])


ALTERNATIVE = (HEAD + b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
               b"preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
               b"plain text\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
               b"<html><body>html text</body></html>\r\n--b1--\r\nepilogue\r\n")


def test_both_alternatives_get_their_disclaimer_and_everything_else_stays() -> None:
    out = add_disclaimer(ALTERNATIVE, TEXT, HTML)
    got = texts(out)
    assert got["text/plain"] == "plain text\r\n\r\nConfidential: meant for the addressee only."
    assert got["text/html"] == f"<html><body>html text{HTML}\r\n</body></html>"
    expected = (ALTERNATIVE.replace(b"plain text\r\n", b"plain text\r\n\r\nConfidential: "
                                    b"meant for the addressee only.\r\n")
                .replace(b"</body>", HTML.encode() + b"\r\n</body>"))
    assert out == expected


def test_mixed_with_an_attachment_edits_the_text_not_the_attachment() -> None:
    raw = (HEAD + b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\n'
           b'Content-Type: multipart/alternative; boundary="a"\r\n\r\n--a\r\n'
           b"Content-Type: text/plain\r\n\r\nbody\r\n--a--\r\n--m\r\n"
           b"Content-Type: text/plain; name=notes.txt\r\nContent-Disposition: attachment\r\n"
           b"\r\nattached notes\r\n--m\r\nContent-Type: message/rfc822\r\n\r\n"
           b"Subject: inner\r\n\r\ninner text\r\n--m--\r\n")
    out = add_disclaimer(raw, TEXT, "")
    assert out == raw.replace(b"body\r\n--a--", b"body\r\n\r\nConfidential: meant for the "
                              b"addressee only.\r\n--a--")


def test_the_messages_of_a_digest_are_not_text_parts() -> None:
    """A digest's parts without Content-Type are message/rfc822 (RFC 2046 5.1.5): the
    forwarded messages are never edited."""
    raw = (HEAD + b'Content-Type: multipart/digest; boundary="d"\r\n\r\n--d\r\n\r\n'
           b"From: x@example.org\r\nSubject: one\r\n\r\nfirst\r\n--d--\r\n")
    with pytest.raises(Untouched, match="no text part"):
        add_disclaimer(raw, TEXT, HTML)


def test_a_bare_lf_message_gets_bare_lf_lines() -> None:
    raw = ALTERNATIVE.replace(b"\r\n", b"\n")
    out = add_disclaimer(raw, TEXT, HTML)
    assert b"\r" not in out
    assert b"plain text\n\nConfidential: meant for the addressee only.\n--b1" in out
    assert f"html text{HTML}\n</body>".encode() in out


@pytest.mark.parametrize("ctype", [b'multipart/signed; protocol="application/pgp-signature"; '
                                   b'micalg=pgp-sha256; boundary="s"',
                                   b'multipart/encrypted; protocol="application/pgp-encrypted"; '
                                   b'boundary="s"',
                                   b'application/pkcs7-mime; smime-type=enveloped-data'])
def test_signed_and_encrypted_mail_is_not_touched(ctype: bytes) -> None:
    raw = (HEAD + b"Content-Type: " + ctype + b"\r\n\r\n--s\r\nContent-Type: text/plain\r\n"
           b"\r\nsigned text\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n"
           b"--s--\r\n")
    with pytest.raises(Untouched):
        add_disclaimer(raw, TEXT, HTML)


def test_inline_pgp_signed_text_is_not_touched() -> None:
    raw = single(b"text/plain", b"7bit", b"-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256"
                 b"\r\n\r\nhello\r\n-----BEGIN PGP SIGNATURE-----\r\nxyz\r\n"
                 b"-----END PGP SIGNATURE-----\r\n")
    with pytest.raises(Untouched, match="PGP"):
        add_disclaimer(raw, TEXT, HTML)


def test_a_part_not_valid_in_its_charset_is_not_touched() -> None:
    raw = single(b"text/plain; charset=us-ascii", b"8bit", "Grüße\r\n".encode())
    with pytest.raises(Untouched, match="does not decode"):
        add_disclaimer(raw, TEXT, "")


def test_a_part_over_the_limit_is_not_touched() -> None:
    raw = single(b"text/plain", b"7bit", (b"x" * 70 + b"\r\n") * (MAX_PART // 72 + 1))
    with pytest.raises(Untouched, match="over"):
        add_disclaimer(raw, TEXT, "")


def test_no_text_part_no_disclaimer() -> None:
    raw = single(b"application/pdf", b"base64", b"JVBERi0=\r\n")
    with pytest.raises(Untouched, match="no text part"):
        add_disclaimer(raw, TEXT, HTML)

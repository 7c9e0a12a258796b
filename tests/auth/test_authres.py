"""Authentication-Results fields that claim our authserv-id (RFC 8601 section 5) are found
whatever their spelling, and only they are left out of what we deliver."""

from __future__ import annotations

from scanner.actions.headers import without
from scanner.auth.authres import own_fields

HEAD = b"Received: from x\r\n\tby y\r\n"
OURS = [  # our authserv-id, however spelled
    b"Authentication-Results: mx.example.org;\r\n\tdkim=pass header.d=bank.example\r\n",
    b"Authentication-Results: MX.Example.ORG 1; spf=pass\r\n",
    b"Authentication-Results: (a (nested) comment) mx.example.org; dmarc=pass\r\n",
    b'Authentication-Results: "mx.example.org"; arc=pass\r\n',
    b"authentication-results:mx.example.org;none\r\n"]
OTHERS = [  # another host's, a look-alike id, an id only in a comment, another field
    b"Authentication-Results: other.example; spf=fail\r\n",
    b"Authentication-Results: mx.example.org.evil; spf=fail\r\n",
    b"Authentication-Results: (mx.example.org) other.example; spf=fail\r\n",
    b"X-Authentication-Results: mx.example.org; spf=pass\r\n"]
TAIL = (b"Subject: hi\r\n\r\n"
        b"Authentication-Results: mx.example.org; in the body, not a header\r\n")
RAW = HEAD + b"".join(OURS) + b"".join(OTHERS) + TAIL


def test_fields_with_our_authserv_id_are_found() -> None:
    found = [RAW[a:b] for a, b in own_fields(RAW, "mx.example.org")]
    assert found == OURS
    assert own_fields(RAW, "nobody.example") == []


def test_leaving_them_out_keeps_every_other_byte() -> None:
    kept = without(RAW, own_fields(RAW, "MX.example.org"))
    assert kept == HEAD + b"".join(OTHERS) + TAIL
    assert without(RAW, []) is RAW


def test_last_header_and_bare_line_ends() -> None:
    lf = b"Subject: x\nAuthentication-Results: mx.example.org;\n spf=pass\n\nbody\n"
    assert without(lf, own_fields(lf, "mx.example.org")) == b"Subject: x\n\nbody\n"
    crlf = b"Authentication-Results: mx.example.org; spf=pass\r\n\r\nbody"
    assert without(crlf, own_fields(crlf, "mx.example.org")) == b"\r\nbody"
    headers_only = b"Subject: y\r\nAuthentication-Results: mx.example.org; spf=pass"
    assert without(headers_only, own_fields(headers_only, "mx.example.org")) == \
        b"Subject: y\r\n"

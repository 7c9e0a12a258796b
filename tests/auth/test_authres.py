"""Authentication-Results fields that claim our authserv-id (RFC 8601 section 5) are found
whatever their spelling, and only they are left out of what we deliver."""

from __future__ import annotations

from scanner.actions.headers import without
from scanner.auth.authres import own_fields, read_results

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


def test_authserv_id_after_deeply_nested_comments() -> None:
    """Comments nest to any depth (RFC 5322 3.2.2); ours were taken out three levels
    deep, so a forged field behind four levels kept our name and was delivered."""
    forged = (b"Authentication-Results: (a (b (c (d) c) b) a) mx.example.org;\r\n"
              b"\tdkim=pass header.d=bank.example\r\n")
    raw = HEAD + forged + TAIL
    assert [raw[a:b] for a, b in own_fields(raw, "mx.example.org")] == [forged]
    escaped = b'Authentication-Results: (x \\) y) "mx.example\\.org"; spf=pass\r\n'
    assert own_fields(HEAD + escaped + TAIL, "mx.example.org") != []


def test_a_quoted_semicolon_does_not_end_an_item() -> None:
    """RFC 8601's grammar: ``;`` separates resinfo items only outside quoted strings and
    comments. A quoted reason holding ``; dkim=pass ...`` was read as its own item."""
    items = read_results(b'mx.example; spf=fail reason="a; dkim=pass header.d=good.test"'
                         b' smtp.mailfrom=x@evil.test; dmarc=pass header.from=good.test')
    assert [(i.method, i.result) for i in items] == [("spf", "fail"), ("dmarc", "pass")]
    assert items[0].props == [("reason", "a; dkim=pass header.d=good.test"),
                              ("smtp.mailfrom", "x@evil.test")]


def test_comments_nest_and_escape() -> None:
    """A comment may hold ``;``, a ``"``, an escaped parenthesis and comments of its own,
    to any depth; a quoted string may hold an escaped quote and a ``(``."""
    items = read_results(b'mx.example; spf=pass (a (b (c (d; dkim=pass) c) b) a)'
                         b' smtp.mailfrom=a@good.test; dkim=fail (he said "no; x \\) y)'
                         b' header.d=good.test; arc=none reason="q \\"; (arc=pass"')
    assert [(i.method, i.result) for i in items] == [("spf", "pass"), ("dkim", "fail"),
                                                     ("arc", "none")]
    assert items[0].props == [("smtp.mailfrom", "a@good.test")]
    assert items[1].props == [("header.d", "good.test")]
    assert items[2].props == [("reason", 'q "; (arc=pass')]


def test_unclosed_quote_or_comment_runs_to_the_end() -> None:
    for value in (b'mx; spf=pass reason="open; dkim=pass', b"mx; spf=pass (open; dkim=pass"):
        items = read_results(value)
        assert [(i.method, i.result) for i in items] == [("spf", "pass")], value


def test_glued_value_and_method_version() -> None:
    items = read_results(b'mx; auth/1 = pass smtp.auth="a b"@good.test header.d = x.test')
    assert [(i.method, i.result) for i in items] == [("auth", "pass")]
    assert items[0].props == [("smtp.auth", '"a b"@good.test'), ("header.d", "x.test")]

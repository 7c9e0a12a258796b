"""A released message goes out as it came in: the ESMTP parameters of its envelope
(BODY, SMTPUTF8, RET, ENVID; each recipient's NOTIFY and ORCPT) are kept in the file's
envelope block and sent again; copies stored in the older formats still release; a next
hop that lacks an extension is treated as for normal delivery."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
from pathlib import Path

import pytest

from scanner.mailid import new_mail_id
from scanner.pipeline.parse import header_display, header_text, parse_headers
from scanner.quarantine import envelope
from scanner.quarantine.config import QuarantineConfig
from scanner.quarantine.release import release
from scanner.quarantine.store import Quarantine
from scanner.reinject.deliver import NextHop
from scanner.testing.sink import Sink
from tests.postfix_stack import plain_postfix

UTF8_RAW = ("From: Jörg <joerg@example.org>\r\nTo: bob@example.test\r\n"
            "Subject: Grüße aus Köln\r\nMessage-ID: <utf8.params@example.org>\r\n\r\n"
            "Grüße\r\n").encode()
MAIL_PARAMS = (("BODY", "8BITMIME"), ("SMTPUTF8", None), ("RET", "HDRS"),
               ("ENVID", "QQ+2B314159"), ("SIZE", "4242"))
RCPT_PARAMS = {"bob@example.test": (("NOTIFY", "SUCCESS,FAILURE"),
                                    ("ORCPT", "rfc822;Bob@example.test")),
               "carol@example.test": (("NOTIFY", "NEVER"),)}


def _store(q: Quarantine, raw: bytes = UTF8_RAW, *, params: bool = True,
           **kw: object):  # noqa: ANN202
    values: dict = dict(mail_id=new_mail_id(), raw=raw, sender="joerg@example.org",
                        recipients=["bob@example.test", "carol@example.test"],
                        category="SPAM", score=9.0, symbols=["X"],
                        subject=header_display(parse_headers(raw), "Subject"),
                        message_id="<utf8.params@example.org>", client_addr=None,
                        policy_bank="")
    if params:
        values.update(mail_params=MAIL_PARAMS, rcpt_params=RCPT_PARAMS)
    values.update(kw)
    return q.store(**values)


def _release(q: Quarantine, hop: NextHop, mail_id: str, **kw: object) -> list[str]:
    kw.setdefault("recipients", None)
    kw.setdefault("requested_by", "tester")
    return asyncio.run(release(q, hop, mail_id, **kw))  # type: ignore[arg-type]


def test_release_sends_the_envelope_parameters_again(quarantine: Quarantine, hop: NextHop,
                                                     sink: Sink):
    """SMTPUTF8 with ASCII addresses was not stored: the UTF-8 header section went out
    in a transaction that did not declare it (RFC 6532), and NOTIFY, ORCPT, ENVID and RET
    were dropped, so the sender's DSN requests were lost."""
    rec = _store(quarantine)
    replies = _release(quarantine, hop, rec.mail_id)
    assert all(r.startswith("250 ") for r in replies), replies
    got = sink.wait_for(1)[0]
    assert got.data.partition(b"\r\n")[2] == UTF8_RAW
    params = [tuple(p) for p in got.mail_params]
    assert [p for p in params if p[0] != "SIZE"] == [
        ("BODY", "8BITMIME"), ("SMTPUTF8", None), ("RET", "HDRS"), ("ENVID", "QQ+2B314159")]
    assert ("SIZE", "4242") not in params  # counted again for what goes out
    assert [[tuple(p) for p in r] for r in got.rcpt_params] == [
        [("NOTIFY", "SUCCESS,FAILURE"), ("ORCPT", "rfc822;Bob@example.test")],
        [("NOTIFY", "NEVER")]]


def test_a_recipient_named_at_release_gets_no_parameters_of_another(
        quarantine: Quarantine, hop: NextHop, sink: Sink):
    rec = _store(quarantine)
    _release(quarantine, hop, rec.mail_id, recipients=["admin@example.test",
                                                       "bob@EXAMPLE.test"])
    got = sink.wait_for(1)[0]
    assert got.recipients == ["admin@example.test", "bob@EXAMPLE.test"]
    assert [[tuple(p) for p in r] for r in got.rcpt_params] == [
        [], [("NOTIFY", "SUCCESS,FAILURE"), ("ORCPT", "rfc822;Bob@example.test")]]
    assert ("SMTPUTF8", None) in [tuple(p) for p in got.mail_params]


def test_the_parameters_round_trip_through_the_envelope_block():
    data = envelope.wrap(b"x", sender="a@example.org", recipients=["b@example.test",
                                                                   "c@example.test"],
                         mail_id="AAAAAAAAAAAA", category="SPAM", stored_at=1.0,
                         mail_params=MAIL_PARAMS,
                         rcpt_params={"b@example.test": RCPT_PARAMS["bob@example.test"]})
    env, raw = envelope.split(data)
    assert raw == b"x" and env is not None
    assert env.mail_params == MAIL_PARAMS[:4]
    assert env.params_of("b@example.test") == RCPT_PARAMS["bob@example.test"]
    assert env.params_of("c@example.test") == () and env.params_of("x@example.test") == ()
    none, _ = envelope.split(envelope.wrap(b"x", sender="", recipients=["b@example.test"],
                                           mail_id="AAAAAAAAAAAA", category="SPAM",
                                           stored_at=1.0, mail_params=()))
    assert none is not None and none.mail_params == () and none.rcpt_params == {}
    unknown, _ = envelope.split(envelope.wrap(b"x", sender="", recipients=["b@example.test"],
                                              mail_id="AAAAAAAAAAAA", category="ARCHIVE",
                                              stored_at=1.0))
    assert unknown is not None and unknown.mail_params is None


def _old_block(raw: bytes, mail_id: str) -> bytes:
    """A file as the code before 2026-12-06 wrote it: the envelope without parameters."""
    fields = ("Return-Path: <joerg@example.org>\r\nX-Envelope-From: <joerg@example.org>\r\n"
              "X-Envelope-To: <bob@example.test>,\r\n <carol@example.test>\r\n"
              f"X-Quarantine-ID: <{mail_id}>\r\nX-Quarantine-Category: SPAM\r\n"
              "X-Quarantine-Stored: 1764979200\r\n").encode()
    return envelope.MARK + str(len(fields)).encode() + b"\r\n" + fields + raw


@pytest.mark.parametrize("layout", ["old block", "no block"])
def test_copies_stored_in_an_older_format_still_release(quarantine: Quarantine,
                                                        hop: NextHop, sink: Sink,
                                                        layout: str):
    """Their parameters are unknown: 8-bit content gets BODY=8BITMIME, and a UTF-8
    header section SMTPUTF8 (as Postfix's smtputf8_autodetect_classes); no recipient
    parameters."""
    rec = _store(quarantine, params=False)  # the file is replaced below
    stored = _old_block(UTF8_RAW, rec.mail_id) if layout == "old block" else UTF8_RAW
    Path(rec.path).write_bytes(gzip.compress(stored))
    replies = _release(quarantine, hop, rec.mail_id)
    assert all(r.startswith("250 ") for r in replies), replies
    got = sink.wait_for(1)[0]
    assert got.data.partition(b"\r\n")[2] == UTF8_RAW
    assert [tuple(p) for p in got.mail_params if p[0] != "SIZE"] == [
        ("BODY", "8BITMIME"), ("SMTPUTF8", None)]
    assert got.rcpt_params == [[], []]


def test_an_old_copy_with_latin1_headers_is_not_declared_smtputf8(quarantine: Quarantine,
                                                                 hop: NextHop, sink: Sink):
    raw = b"Subject: caf\xe9\r\n\r\nbody\r\n"
    rec = _store(quarantine, raw, params=False)
    Path(rec.path).write_bytes(gzip.compress(_old_block(raw, rec.mail_id)))
    _release(quarantine, hop, rec.mail_id)
    assert [tuple(p) for p in sink.wait_for(1)[0].mail_params if p[0] != "SIZE"] == [
        ("BODY", "8BITMIME")]


def test_header_text_reads_raw_utf8():
    """header_text turned each byte of a raw UTF-8 header into U+FFFD: the quarantine
    index (``quarantine list``) showed 'Gr\ufffd\ufffd\ufffd\ufffde'. For the index,
    header_display also decodes encoded words, as amavis's msgs.subject."""
    msg = parse_headers(UTF8_RAW)
    assert header_text(msg, "Subject") == "Grüße aus Köln"
    assert header_text(msg, "From") == "Jörg <joerg@example.org>"
    enc = parse_headers(b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nX: caf\xe9\r\n\r\n")
    assert header_display(enc, "Subject") == "Grüße"
    assert header_text(enc, "X") == "caf\ufffd"


def test_reindex_reads_a_utf8_subject(qdir: Path):
    first = Quarantine(QuarantineConfig(directory=str(qdir)), hostname="filter1.test")
    rec = _store(first, params=False)
    (qdir / "index.sqlite").rename(qdir / "index.sqlite.lost")
    second = Quarantine(QuarantineConfig(directory=str(qdir)), hostname="filter1.test")
    second.reindex()
    assert second.get(rec.mail_id).subject == "Grüße aus Köln"


@pytest.mark.postfix
def test_a_next_hop_without_the_extensions_is_treated_as_for_normal_delivery(
        quarantine: Quarantine):
    """Postfix without SMTPUTF8 and 8BITMIME: BODY and SMTPUTF8 are left out for ASCII
    addresses and the message goes; a non-ASCII recipient is refused 553 5.6.7 and never
    sent (RFC 6531 3.4), as the reinjection client does for scanned mail."""
    postfix = plain_postfix(smtputf8_enable="no", smtpd_discard_ehlo_keywords="8bitmime")
    try:
        hop = NextHop("127.0.0.1", postfix.smtpd_port, False, 5, 30, "scanner.test", True)
        rec = _store(quarantine, params=False,
                     recipients=["bob@example.test", "jörg@example.test"])
        replies = _release(quarantine, hop, rec.mail_id)
        assert replies[0].startswith("250 2.0.0 from MTA(smtp:"), replies
        assert replies[1].startswith("553 5.6.7 ") and "SMTPUTF8" in replies[1], replies
        got = postfix.wait_delivered(1, 30, user="bob")[0].read_bytes()
        assert "Subject: Grüße aus Köln".encode() in got
        assert "reject: RCPT" not in postfix.log_text()
    finally:
        postfix.remove()


def test_amavisd_release_to_another_recipient(server, sink: Sink, tmp_path: Path):
    """Over AM.PDP with amavis's own client: the message's parameters go out, and the
    recipient named in the request gets none of the original recipients'."""
    from .test_amavisd_release import CLIENT, _edited_copy

    if not CLIENT.exists():
        pytest.skip(f"{CLIENT} not found (set AMAVISD_RELEASE)")
    _, q, path = server()
    rec = _store(q)
    out = subprocess.run([*_edited_copy(tmp_path, path), rec.mail_id, rec.secret_id,
                          "admin@example.test"], capture_output=True, text=True, timeout=60)
    assert out.stderr.startswith("250 2.6.0 Ok"), out.stderr
    got = sink.wait_for(1)[0]
    assert got.recipients == ["admin@example.test"] and got.rcpt_params == [[]]
    assert [tuple(p) for p in got.mail_params if p[0] != "SIZE"] == [
        ("BODY", "8BITMIME"), ("SMTPUTF8", None), ("RET", "HDRS"), ("ENVID", "QQ+2B314159")]


def test_a_utf8_releaser_name_is_encoded_unless_the_message_is_smtputf8(
        quarantine: Quarantine, hop: NextHop, sink: Sink):
    """``--by Jörg``: the release header was raw UTF-8 in front of a 7-bit message sent
    without SMTPUTF8 (RFC 6532 wants SMTPUTF8 for a UTF-8 header); as encoded words it
    reads back the same. An SMTPUTF8 message keeps it as UTF-8."""
    ascii_raw = b"Subject: plain\r\n\r\nbody\r\n"
    plain = _store(quarantine, ascii_raw, mail_params=(), rcpt_params={})
    utf8 = _store(quarantine)
    _release(quarantine, hop, plain.mail_id, requested_by="Jörg Müller")
    _release(quarantine, hop, utf8.mail_id, requested_by="Jörg Müller")
    first, second = sink.wait_for(2)
    assert first.mail_params == [("SIZE", str(len(first.data)))]
    header = first.data.split(b"\r\n", 1)[0]
    assert header.isascii(), header
    value = header.decode().split(": ", 1)[1]
    assert header_display(parse_headers(header + b"\r\n\r\n"), "X-Quarantine-Released"
                          ).startswith("by Jörg Müller at "), value
    assert second.data.startswith("X-Quarantine-Released: by Jörg Müller at ".encode())

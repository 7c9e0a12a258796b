"""Defanging (amavis's $defang_virus, $defang_banned, ...): a passed copy of dangerous
mail to a local recipient is wrapped, a warning first and the original attached."""

from __future__ import annotations

import email
import logging
from email.message import Message
from email.policy import compat32

from scanner.actions.defang import defang, warning_lines
from scanner.config import loads
from scanner.scores import load_scores
from scanner.task import Destiny, Hit, Verdict
from tests.policy.recipient_mix import BADH, BANNED, BAYES, EICAR, RAW, copies, run

ORIGINAL = (b"Received: from mx.spam.example (mx.spam.example [192.0.2.7])\r\n"
            b"\tby mx.example.test with ESMTP id 4ABC; Sat,  5 Dec 2026 10:00:00 +0100\r\n"
            b"From: promo@spam.example\r\nTo: bob@example.test\r\nSubject: offer\r\n"
            b"Message-ID: <mix@spam.example>\r\nX-Custom: kept inside only\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            b"the body BODYMARK\r\n")


def _parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=compat32)


def test_the_wrapper_keeps_trace_and_identity_fields_and_attaches_the_original() -> None:
    data = defang(ORIGINAL, "promo@spam.example", ("WARNING: contains virus X",), False)
    msg = _parse(data)
    assert msg.get_content_type() == "multipart/mixed"
    assert msg["Subject"] == "offer" and msg["Message-ID"] == "<mix@spam.example>"
    assert msg["Received"].startswith("from mx.spam.example") and msg["X-Custom"] is None
    note, attached = msg.get_payload()
    assert note.get_content_type() == "text/plain"
    assert note.get_payload() == "WARNING: contains virus X\r\n"
    assert attached.get_content_type() == "message/rfc822"
    assert attached.get_param("x-spam-type") == "original"
    assert attached.get_filename() == "message"
    inner = attached.get_payload(0)
    assert inner["Return-Path"] == "<promo@spam.example>"
    assert inner["X-Custom"] == "kept inside only"
    assert inner.get_payload() == "the body BODYMARK\r\n"  # its last line end kept
    # the original, byte for byte, after the Return-Path line
    assert ORIGINAL in data and data.count(b"BODYMARK") == 1
    assert all(line.endswith(b"\r") for line in data.split(b"\n")[:-1])


def test_a_bare_lf_message_stays_bare_lf_and_utf8_headers_make_message_global() -> None:
    lf = ORIGINAL.replace(b"\r\n", b"\n").replace(b"Subject: offer", "Subject: Angebot für dich"
                                                   .encode())
    data = defang(lf, "", ("WARNING: x",), True)
    assert b"\r" not in data
    assert b"Content-Type: message/global; x-spam-type=original" in data
    assert b"Content-Transfer-Encoding: 8bit" in data
    assert b"Return-Path: <>" in data
    assert "Subject: Angebot für dich".encode() in data.split(b"\n\n")[0]
    # without SMTPUTF8 the attachment is message/rfc822
    assert b"message/rfc822" in defang(lf, "", ("WARNING: x",), False)


def test_the_boundary_never_occurs_in_the_original() -> None:
    data = defang(ORIGINAL, "a@b", ("w",), False)
    boundary = _parse(data).get_boundary()
    assert boundary and boundary.encode() not in ORIGINAL
    assert data.count(f"--{boundary}".encode()) == 3  # two delimiters and the close


def _verdict(categories: tuple[str, ...], hits: list[Hit], defang_keys: str) -> tuple:
    config = loads(f"[policy]\ndefang = [{defang_keys}]\n", "t.toml")
    verdict = Verdict(categories[0], Destiny.PASS, 12.0, hits=hits, policy=config.policy,
                      categories=categories)
    return verdict, config.policy


def test_warning_lines_say_what_was_found_for_the_chosen_categories_only() -> None:
    scores = load_scores()
    verdict, policy = _verdict(("VIRUS", "BANNED", "SPAM"), [EICAR, BANNED, BAYES],
                               '"virus", "banned"')
    assert warning_lines(verdict, policy, scores, "report") == (
        "WARNING: contains virus Eicar-Signature",
        "WARNING: banning rules detected suspect part(s),",
        "do not open unless you know what you are doing")
    verdict, policy = _verdict(("SPAM",), [BAYES], '"spam"')
    assert warning_lines(verdict, policy, scores, "Content analysis\r\n\t* 3.5 BAYES_99") == (
        "Content analysis", "* 3.5 BAYES_99")
    verdict, policy = _verdict(("BAD-HEADER",), [BADH], '"bad_header"')
    assert warning_lines(verdict, policy, scores, "") == (
        "WARNING: bad headers - Subject: control character",)
    verdict, policy = _verdict(("VIRUS",), [EICAR], '"banned"')
    assert warning_lines(verdict, policy, scores, "") == ()


def test_a_virus_lover_gets_the_wrapped_copy_an_outsider_the_plain_one(sink, caplog):
    """Local lover: wrapped (warning, then the original). A non-local recipient (not in
    local_domains) of the same message gets it as it came, as amavis defangs incoming
    mail only."""
    caplog.set_level(logging.INFO, logger="scanner")
    policy = "virus_lover = true\ndefang = ['virus']\n"
    replies, _ = run(sink, policy, [EICAR], ["lover@example.test", "ext@remote.test"],
                     sender="alice@example.org")
    assert [r[:3] for r in replies] == ["250", "250"]
    got = copies(sink)
    wrapped, plain = _parse(got["lover@example.test"]), got["ext@remote.test"]
    assert wrapped.get_content_type() == "multipart/mixed"
    note, attached = wrapped.get_payload()
    assert "WARNING: contains virus Eicar-Signature" in note.get_payload()
    assert attached.get_payload(0)["Message-ID"] == "<mix@spam.example>"
    assert wrapped["X-Amavis-Alert"].startswith("INFECTED")  # edits on the wrapper
    assert wrapped["Subject"].startswith("***")  # the virus Subject tag too
    assert b"multipart/mixed" not in plain and plain.endswith(RAW.split(b"\r\n\r\n")[1])
    assert "DEFANGING MAIL: WARNING: contains virus Eicar-Signature" in caplog.text


def test_clean_mail_and_blocked_copies_are_not_wrapped(sink):
    replies, _ = run(sink, "defang = ['virus', 'spam']\n", [], ["bob@example.test"])
    assert b"multipart/mixed" not in copies(sink)["bob@example.test"]

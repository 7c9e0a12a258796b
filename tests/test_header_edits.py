"""The copy handed back to Postfix: added headers, the Subject tag and left-out fields
change nothing else, keep the message's line ends and stay valid RFC 5322 / 2047.

``corpora/headers`` holds the edge cases (no blank line, a leading blank line, an mbox
``From `` line, a line without a colon, 100 KB header lines, 8-bit and encoded
subjects, two Subjects, ...); ``scripts/header_differential.py`` runs the same check
over any directory (the SpamAssassin corpus, for one).
"""

from __future__ import annotations

import base64
import email
import email.policy
import importlib.util
import re
from pathlib import Path

import pytest

from scanner.actions.headers import prefix_subject
from scanner.task import Envelope, Recipient, Task
from scanner.trace import prepend_headers

ROOT = Path(__file__).resolve().parent.parent
CASES = sorted((ROOT / "corpora" / "headers").glob("*.eml"))


def _differential():
    spec = importlib.util.spec_from_file_location(
        "header_differential", ROOT / "scripts" / "header_differential.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DIFF = _differential()
TASK = Task(mail_id="abcdefghijkl", envelope=Envelope("a@example.org",
            (Recipient("bob@example.test"),)), raw=b"", peer=("127.0.0.1", 4567),
            helo="localhost")


def _subjects(raw: bytes) -> list[str]:
    return [str(s) for s in
            email.message_from_bytes(raw, policy=email.policy.default).get_all("Subject") or []]


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_edge_case_messages_come_out_intact(path: Path, crlf: bool) -> None:
    raw = path.read_bytes()
    if crlf:
        raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
    assert DIFF.check(raw, TASK) == []


def test_added_lines_end_like_the_message() -> None:
    headers = [("Received", "from a\r\n\tby b; date"), ("X-Spam-Flag", "YES")]
    lf = prepend_headers(b"Subject: s\nFrom: a\n\nbody\n", headers)
    assert lf == b"Received: from a\n\tby b; date\nX-Spam-Flag: YES\nSubject: s\nFrom: a\n\nbody\n"
    crlf = prepend_headers(b"Subject: s\r\n\r\nbody\nbare LF in the body\r\n", headers)
    assert crlf.startswith(b"Received: from a\r\n\tby b; date\r\nX-Spam-Flag: YES\r\nSubject")
    tagged = prefix_subject(b"From: a\n\nb\n", "***SPAM*** ")
    assert tagged == b"Subject: ***SPAM***\nFrom: a\n\nb\n"
    assert prefix_subject(b"\nbody only\n", "T ") == b"Subject: T\n\nbody only\n"
    assert prefix_subject(b"", "T ") == b"Subject: T\r\n"


def test_every_subject_field_is_tagged() -> None:
    """amavis edits every Subject field; a client showing the second one (or a spammer
    adding one) must not see it untagged. The obsolete ``Subject :`` form counts too."""
    raw = b"Subject: first\r\nX: 1\r\nsubject: second\r\n\r\nSubject: body\r\n"
    assert prefix_subject(raw, "***SPAM*** ") == (
        b"Subject: ***SPAM*** first\r\nX: 1\r\nsubject: ***SPAM*** second\r\n\r\n"
        b"Subject: body\r\n")
    raw = b"From: a\r\nSubject : obsolete\r\n\r\nb"
    assert prefix_subject(raw, "***SPAM*** ") == (
        b"From: a\r\nSubject : ***SPAM*** obsolete\r\n\r\nb")


def test_a_subject_tagged_before_is_not_tagged_twice() -> None:
    """As amavis, the tag is removed wherever it already stands before it is put in
    front (a reply to spam, a second pass through a filter); the rest stays as it was."""
    raw = b"Subject: ***SPAM*** Re: ***SPAM*** offer\r\n\tcontinued\r\nTo: b\r\n\r\n***SPAM*** "
    assert prefix_subject(raw, "***SPAM*** ") == (
        b"Subject: ***SPAM*** Re: offer\r\n\tcontinued\r\nTo: b\r\n\r\n***SPAM*** ")
    # without its trailing space the text is not the tag; a tag under 3 characters is
    # never removed (amavis's precaution)
    assert prefix_subject(b"Subject: ***SPAM***\n\n", "***SPAM*** ") == (
        b"Subject: ***SPAM*** ***SPAM***\n\n")
    assert prefix_subject(b"Subject: S x\n\n", "S ") == b"Subject: S S x\n\n"
    # the field's end is its last continuation line's, past a bare CR inside a line
    assert prefix_subject(b"Subject: a\r***SPAM*** b\n ***SPAM*** c\nX: ***SPAM*** \n\n",
                          "***SPAM*** ") == b"Subject: ***SPAM*** a\rb\n c\nX: ***SPAM*** \n\n"


def test_a_field_with_a_bare_cr_is_found_whole() -> None:
    """headerfields.named read a bare CR as the end of the line and then found no field
    at all: a sender's X-Spam-Flag with a bare CR inside was not left out."""
    from scanner.actions.tagging import spam_header_fields

    raw = b"X-Spam-Flag: NO\r junk\r\n\tmore\r\nSubject: s\r\n\r\nbody"
    assert spam_header_fields(raw, "X-Spam-") == [(0, raw.index(b"Subject"))]


@pytest.mark.parametrize("subject, shown", [
    (b"Subject: plain text", "[Спам] plain text"),
    (b"Subject: =?utf-8?q?na=C3=AFve?= text", "[Спам] naïve text"),
    (b"Subject:\r\n =?utf-8?q?na=C3=AFve?=", "[Спам] naïve"),
    (b"Subject: " + "Grüße".encode(), "[Спам] Grüße"),
    (b"X-Other: no subject", "[Спам]"),
])
def test_a_non_ascii_tag_is_rfc2047_encoded(subject: bytes, shown: str) -> None:
    """A tag like ``[Спам] `` (policy.subject_tag2 may be any text) goes in as an
    encoded word, as amavis encodes it, not as raw 8-bit bytes, and reads back as the
    tag plus the original text with one space between."""
    raw = b"From: a@example.org\r\n" + subject + b"\r\n\r\nbody\r\n"
    out = prefix_subject(raw, "[Спам] ")
    head = out.split(b"\r\n\r\n")[0]
    added = head.replace(subject.partition(b":")[2].strip(), b"")
    assert added.isascii(), head
    assert " ".join(_subjects(out)[0].split()) == shown and _subjects(out)[0] == shown
    assert out.endswith(b"\r\n\r\nbody\r\n")


def _lover_edits(policy_text: str, hits: list):
    from scanner.actions.tagging import edits_for
    from scanner.config import loads
    from scanner.policy.decide import decide
    from scanner.policy.effective import bank_names, message_policy, recipient_policy
    from scanner.scores import load_scores

    config = loads("[policy]\nlocal_domains=['example.test']\nbanned_lover=true\n"
                   + policy_text, "t.toml")
    task = Task(mail_id="abcdefghijkl", raw=b"Subject: s\r\n\r\nx\r\n", log_id="1-1",
                envelope=Envelope("a@example.org", (Recipient("bob@example.test"),)))
    task.hits.extend(hits)
    policy = recipient_policy(message_policy(config, bank_names(config, "", None)),
                              "bob@example.test")
    scores = load_scores()
    verdict = decide(task, "bob@example.test", policy, scores, {"clamav": "virus"})
    return dict(edits_for(task, "bob@example.test", verdict, scores, "mx.test", True).headers)


def test_added_text_fields_are_ascii_and_short_whatever_they_carry() -> None:
    """X-Virus-Scanned (its text is configurable) and X-Amavis-Alert (it names the
    banned file: any characters, a Content-Type of any length) are unstructured
    fields: non-ASCII text goes in as encoded words, long text is folded, and no line
    passes 998 octets."""
    from scanner.task import Hit

    name = "Счёт-фактура №" + "😀" * 240 + ".exe"
    part = f"P=p003,L=1,M=application/x-msdownload,T=exe-ms,N={name}"
    long_type = f"P=p004,L=1,M=application/{'x' * 2000},T=exe-ms,N=a.exe"
    for desc in (part, long_type):
        headers = _lover_edits(
            'virus_scanned_value = "Geprüft von {hostname}"\n',
            [Hit("BANNED_FILE", source="banned", options=(desc, "x"), part=desc)])
        raw = prepend_headers(b"Subject: s\r\n\r\nx\r\n", list(headers.items()))
        head = raw.split(b"\r\n\r\n")[0]
        assert head.isascii()
        assert all(len(line) <= 998 for line in head.split(b"\r\n"))
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert str(msg["X-Virus-Scanned"]) == "Geprüft von mx.test"
        alert = " ".join(str(msg["X-Amavis-Alert"]).split())  # a fold reads as a TAB
        assert alert.startswith(f"BANNED, message contains {desc[:40]}")
    assert alert.endswith("xxx...")
    headers = _lover_edits("", [Hit("BANNED_FILE", source="banned", options=(part, "x"),
                                    part=part)])
    raw = prepend_headers(b"Subject: s\r\n\r\nx\r\n", list(headers.items()))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert " ".join(str(msg["X-Amavis-Alert"]).split()) == f"BANNED, message contains {part}"


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_recipient_groups_get_only_their_own_edits(sink, eol: bytes) -> None:
    """One message, three recipients whose copies differ: tagged with the shipped tag,
    tagged with their own tag, and a remote one left alone. Each group gets one copy;
    every copy has the same body and only its own group's edits."""
    from scanner.config import loads
    from scanner.task import ClientInfo
    from tests.helpers import handle_at_sink

    body = b"Body line\r\n.dot line\r\nX-Spam-Flag: NO in the body\r\n\r\n"
    raw = (b"From: promo@spam.example\r\nTo: many@example.test\r\nSubject: deal\r\n"
           b"X-Spam-Flag: NO\r\nMessage-ID: <g1@spam.example>\r\n\r\n" + body)
    raw = raw.replace(b"\r\n", eol)
    config = loads("[checks]\nenabled = []\n[policy]\nlocal_domains = ['example.test']\n"
                   "block_senders = ['@spam.example']\nspam_destiny = 'pass'\n"
                   "[policy.recipients.\"dave@example.test\"]\nsubject_tag2 = '[S] '\n",
                   "t.toml")
    rcpts = ["bob@example.test", "carol@remote.test", "dave@example.test"]
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=raw,
                envelope=Envelope("promo@spam.example", tuple(Recipient(r) for r in rcpts)),
                client=ClientInfo(addr="192.0.2.7", helo="mx.spam.example"))
    before = len(sink.received)
    assert all(r.startswith("250") for r in handle_at_sink(config, [], task, sink.port))
    copies = {m.recipients[0]: m.data.replace(b"\r\n", b"\n")
              for m in sink.wait_for(before + 3)[before:]}
    assert sorted(copies) == sorted(rcpts)
    assert {c.partition(b"\n\n")[2] for c in copies.values()} == {body.replace(b"\r\n", b"\n")}
    bob, carol, dave = (copies[r].partition(b"\n\n")[0] for r in rcpts)
    assert b"Subject: ***SPAM*** deal" in bob and b"X-Spam-Flag: YES" in bob
    assert b"X-Spam-Flag: NO" not in bob and b"[S]" not in bob
    assert b"Subject: [S] deal" in dave and b"X-Spam-Flag: YES" in dave
    assert b"***SPAM***" not in dave and b"X-Spam-Flag: NO" not in dave
    assert b"Subject: deal" in carol and b"X-Spam-Flag: NO" in carol
    assert b"X-Spam-Flag: YES" not in carol and b"X-Spam-Status" not in carol
    assert b"for <carol@remote.test>" in carol and b"for <bob@" not in carol


def test_a_non_ascii_tag_from_a_first_pass_is_not_added_twice() -> None:
    """Our own encoded ``***СПАМ*** `` was not recognised on a second pass (only a plain
    ASCII tag was looked for): the Subject read ``***СПАМ*** ***СПАМ*** hi``."""
    tag = "***СПАМ*** "
    for subject in (b"hi", b"=?UTF-8?Q?h=C3=AF?=", "Grüße".encode()):
        raw = b"From: a\r\nSubject: " + subject + b"\r\n\r\nbody\r\n"
        twice = prefix_subject(prefix_subject(raw, tag), tag)
        assert _subjects(twice)[0].count("СПАМ") == 1, twice
        assert twice.split(b"\r\n\r\n")[0].isascii()


def test_an_ascii_tag_inside_an_encoded_word_is_recognised() -> None:
    """amavis writes a tagged non-ASCII Subject as encoded words, the tag inside them;
    amavis removes it after decoding, so must we (the copy read ``***SPAM*** ***SPAM***
    Привет``), and the other fields and the body stay as they were."""
    inner = base64.b64encode("***SPAM*** Привет".encode()).decode()
    raw = f"Subject: Re: =?UTF-8?B?{inner}?=\nX: 1\n\nbody\n".encode()
    out = prefix_subject(raw, "***SPAM*** ")
    assert _subjects(out) == ["***SPAM*** Re: Привет"]
    assert out.endswith(b"\nX: 1\n\nbody\n") and out.isascii()


def test_a_non_ascii_tag_without_a_trailing_space_stands_apart() -> None:
    """``[Spam] ¡`` ends with an encoded word; the Subject's first word was glued to it
    (``=?UTF-8?B?...?=Hola``), which RFC 2047 readers do not decode. Tag and text are
    now encoded together, as amavis does."""
    for subject, shown in ((b"Hola", "[Spam] ¡Hola"), (b"=?utf-8?q?Ol=C3=A1?=", "[Spam] ¡Olá")):
        out = prefix_subject(b"Subject: " + subject + b"\n\nb\n", "[Spam] ¡")
        assert re.search(rb"\?=[^\s]", out) is None, out
        assert _subjects(out) == [shown]


@pytest.mark.parametrize("subject, text", [
    ("Grüße – ünïcödé".encode(), "Grüße – ünïcödé"),
    (b"Caf\xe9 cr\xe8me", "Café crème"),
    ("Grüße =?utf-8?q?na=C3=AFve?= x".encode(), "Grüße naïve x"),
    (("lang " * 40 + "ü").encode() + b"\r\n\tfolded", "lang " * 40 + "ü folded"),
], ids=["utf8", "latin1", "utf8-and-encoded-word", "long-folded"])
def test_a_raw_8bit_subject_is_encoded_unless_smtputf8(subject: bytes, text: str) -> None:
    """amavis RFC 2047-encodes the Subject it tags when it holds 8-bit text and the
    message is not SMTPUTF8; we kept the raw octets, an invalid header for 7-bit mail.
    The result is ASCII, folded within RFC 2047's 76 columns a line holding encoded
    words, and reads back as tag plus text."""
    raw = b"From: a\r\nSubject: " + subject + b"\r\nTo: b\r\n\r\nbody\r\n"
    out = prefix_subject(raw, "***SPAM*** ")
    head = out.split(b"\r\n\r\n")[0]
    assert head.isascii() and all(len(ln) <= 76 for ln in head.split(b"\r\n"))
    assert " ".join(_subjects(out)[0].split()) == " ".join(("***SPAM*** " + text).split())
    assert out.startswith(b"From: a\r\nSubject: ") and out.endswith(b"\r\nTo: b\r\n\r\nbody\r\n")
    # SMTPUTF8 mail may carry UTF-8 headers: the octets stay, the tag goes in front
    assert prefix_subject(raw, "***SPAM*** ", smtputf8=True) == raw.replace(
        b"Subject: ", b"Subject: ***SPAM*** ")


def test_plain_subjects_are_not_decoded(monkeypatch) -> None:
    """Only a value with an encoded word or 8-bit octets can hide the tag from the byte
    search; 10,000 plain Subject fields were each decoded all the same."""
    from scanner.actions import headers

    calls = []
    text = headers._text
    monkeypatch.setattr(headers, "_text", lambda value: calls.append(value) or text(value))
    raw = b"".join(b"Subject: s %d\n" % i for i in range(100)) + b"Subject: =?utf-8?q?x?=\n\nb\n"
    out = prefix_subject(raw, "***SPAM*** ")
    assert out.count(b"Subject: ***SPAM*** ") == 101 and len(calls) == 1


@pytest.mark.parametrize("prefix", ["***SPAM*** ", "[SPAM]"])
def test_a_subject_tag_never_makes_a_line_longer_than_998_octets(prefix: str):
    """RFC 5322 2.1.1: a line is at most 998 octets. A Subject line near the limit grew
    past it with the tag (1005 octets); it is folded at white space instead, so that it
    unfolds to the tagged value."""
    words = " ".join(["word"] * 197)  # "Subject: " + 984 octets = 993
    for value in (words, "x" * 980 + " tail"):
        raw = f"Subject: {value}\r\nFrom: a@example.org\r\n\r\nbody\r\n".encode()
        assert max(map(len, raw.split(b"\r\n"))) <= 998
        tagged = prefix_subject(raw, prefix)
        assert max(map(len, tagged.split(b"\r\n"))) <= 998, tagged[:120]
        head = tagged.split(b"\r\n\r\n", 1)[0]
        subject = head.split(b"\r\nFrom:", 1)[0]
        assert re.sub(rb"\r\n(?=[ \t])", b"", subject) == f"Subject: {prefix}{value}".encode()
        assert tagged.endswith(b"\r\nFrom: a@example.org\r\n\r\nbody\r\n")


@pytest.mark.parametrize("subject, prefix, shown", [
    (b"\xff\xfe broken =?x-unknown?B?AAAA?= words", "***SPAM*** ",
     "***SPAM*** \u00ff\u00fe broken =?x-unknown?B?AAAA?= words"),  # corpora/ml/bad-charset
    (b"hi =?utf-8?B?AAAA?= =?utf-8?q?Ol=C3=A1?=", "[Spam] \u00a1",
     "[Spam] \u00a1hi =?utf-8?B?AAAA?=Ol\u00e1"),
    (b"=?utf-8?q?a=0D=0Ab?= \xe9t\xe9", "***SPAM*** ",
     "***SPAM*** =?utf-8?q?a=0D=0Ab?= \u00e9t\u00e9"),
], ids=["unknown-charset-nuls", "utf8-nuls-joined-tag", "hidden-crlf"])
def test_control_characters_hidden_in_an_encoded_word_stay_hidden(
        subject: bytes, prefix: str, shown: str) -> None:
    """A Subject written anew (8-bit text, or a tag that must be encoded with the text)
    decoded ``=?x-unknown?B?AAAA?=`` to three NULs and wrote them back, re-encoded:
    every reader now saw them. Such a word stays as it was written (RFC 2047 section
    6.2; amavis's Encode::MIME::Header keeps a word of an unknown charset so); other
    words are decoded as before."""
    out = prefix_subject(b"Subject: " + subject + b"\r\n\r\nbody\r\n", prefix)
    assert out.split(b"\r\n\r\n")[0].isascii()
    got = _subjects(out)[0]
    assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]", got), got
    assert " ".join(got.split()) == shown


@pytest.mark.parametrize("subject, written", [
    (b"Hello \x01 w\xc3\xb6rld", b"Subject: ***SPAM*** Hello \x01 =?UTF-8?B?d8O2cmxk?="),
    (b"Caf\xe9 \x1b[1m x\x7f", b"Subject: ***SPAM*** =?UTF-8?B?Q2Fmw6k=?= \x1b[1m x\x7f"),
], ids=["control-before", "controls-after"])
def test_raw_control_characters_of_a_rewritten_subject_stay_raw(subject: bytes,
                                                                written: bytes) -> None:
    """An 8-bit Subject is written anew for 7-bit mail; a raw control character in its
    ASCII words before or after the 8-bit ones went into our encoded words. amavis's
    q_encode keeps those words (FWS | utext: TAB, C0 controls but NUL, CR, LF, and
    DEL) as they are and encodes only from the first 8-bit word to the last: so do we,
    the tag included. The Subject reads back as before."""
    out = prefix_subject(b"Subject: " + subject + b"\r\nTo: b\r\n\r\nbody\r\n", "***SPAM*** ")
    assert out.split(b"\r\n")[0] == written
    text = subject.decode("utf-8") if subject.startswith(b"Hello") else \
        subject.decode("cp1252")
    assert _subjects(out) == ["***SPAM*** " + text]

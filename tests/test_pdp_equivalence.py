"""The milter's copy equals the SMTP path's: the header edits an AM.PDP answer carries
(``delivery_care_of=client``), applied as Postfix applies milter edits, give the header
section the SMTP path (``delivery_care_of=server``, reinjected to the sink) delivers,
apart from our trace Received header."""

from __future__ import annotations

import pytest

from scanner.headerfields import named, section_end
from scanner.testing.sink import Sink
from tests.test_pdp_scan import BAYES, MAIL, start  # noqa: F401

TAGGED = ("tag_level = -999\ntag2_level = 5.0\nkill_level = 9.0\n"
          "remove_existing_spam_headers = true\n")


def _apply(raw: bytes, answer: dict[str, list[str]]) -> bytes:
    """Postfix's delheader/chgheader (INDEX-th field of NAME in any case, counted from 1)
    and insheader 0 (on top), in the answer's order; values fold with LF."""
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    ops = [(k, v) for k in ("delheader", "chgheader", "insheader") for v in answer.get(k, [])]
    for kind, value in ops:
        if kind == "insheader":
            _, name, text = value.split(" ", 2)
            raw = f"{name}: {text}".replace("\n", "\r\n").encode() + b"\r\n" + raw
            continue
        index, name, *rest = value.split(" ", 2)
        field = named(raw, (name,))[int(index) - 1]
        new = b"" if kind == "delheader" else (
            f"{name}: {rest[0]}".replace("\n", "\r\n").encode() + b"\r\n")
        raw = raw[:field.start] + new + raw[field.end:]
    return raw


def _head(raw: bytes) -> bytes:
    return raw[:section_end(raw)]


def _without_trace(raw: bytes) -> bytes:
    [ours] = [f for f in named(raw, ("Received",)) if b"scanner.test" in f.value]
    return raw[:ours.start] + raw[ours.end:]


CASES = {
    "forged flags in any case": MAIL.replace(
        "X-Spam-Flag: NO\n", "X-Spam-Flag: NO\nx-spam-flag: YES\nX-SPAM-SCORE: 99\n"),
    "two subjects": MAIL.replace("Subject: lunch\n", "Subject: lunch\nSubject: dinner\n"),
    "folded subject": MAIL.replace("Subject: lunch\n", "Subject: lunch\n  at noon\n"),
    "non-ascii subject": MAIL.replace("Subject: lunch\n", "Subject: Mittagessen Köln\n"),
    "encoded subject": MAIL.replace("Subject: lunch\n",
                                    "Subject: =?UTF-8?B?TWl0dGFnIEvDtmxu?= heute\n"),
    "percent and tabs": MAIL.replace("Subject: lunch\n", "Subject: 100%\tsure  %41\n"),
    "no subject": MAIL.replace("Subject: lunch\n", ""),
    "long folded subject": MAIL.replace("Subject: lunch\n", "Subject: lunch\n" + "".join(
        f" line{i} {'x' * 70}\n" for i in range(100))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_milter_edits_give_the_smtp_copy(start, sink: Sink, case: str) -> None:  # noqa: F811
    mail = CASES[case].encode()
    scanner = start(hits=[BAYES], policy=TAGGED)
    answer = scanner.scan(mail)
    assert answer["return_value"] == ["continue"], answer
    assert scanner.scan(mail, delivery_care_of="server")["return_value"] == ["discard"]
    [smtp] = sink.wait_for(1)
    assert _head(_apply(mail, answer)) == _head(_without_trace(smtp.data)), answer

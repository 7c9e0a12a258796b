"""decoders.headerparse gives exactly the standard library's header-only parse.

Compared field by field (names, raw values, payload, unix-from, defects by type and
text) with ``BytesHeaderParser(policy=compat32)`` on crafted sections (each malformed
shape the fast path must hand over), on random sections built from the pieces real
and broken headers are made of, and on every header section of the public corpus
(top level and MIME parts, as SMTP delivers them with CRLF and as stored with LF).
"""

from __future__ import annotations

import random
import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

import pytest

from decoders import headerparse
from decoders.headerparse import parse_header_block
from decoders.mimeutil import Entity
from scanner.ml.text import strip_mbox_from
from tests.decoders.corpus import corpus_messages


def _state(msg: Message) -> dict:
    state = dict(vars(msg))
    state["defects"] = [(type(d), str(d)) for d in msg.defects]
    state["class"] = type(msg)
    return state


def _assert_same(block: bytes) -> None:
    for factory in (Message, Entity):
        ours = parse_header_block(block, factory)
        stdlib = BytesHeaderParser(_class=factory, policy=compat32).parsebytes(block)
        assert _state(ours) == _state(stdlib), block[:300]


CRAFTED = [
    b"",
    b"\r\n",
    b"\r\n\r\n",
    b"Subject: hi\r\n",
    b"Subject: hi\r\n\r\n",
    b"Subject: hi",  # no line end
    b"Subject: hi\r\n\r\nbody\r\n",  # text after the empty line
    b"Subject: hi\n\n",  # bare LF
    b"Subject: hi\r\rX: y\r\n",  # bare CR
    b"Subject: a\r\n b\r\n\tc\r\nTo: x@y\r\n\r\n",  # continuations
    b"Subject:\r\n folded only\r\n\r\n",
    b"Subject:   \r\n\r\n",
    b"Subject: trailing blanks  \r\n \r\n\t\r\n\r\n",
    b" leading continuation\r\nSubject: x\r\n\r\n",
    b"From sender@example.com Mon Dec  7 10:00:00 2026\r\nSubject: x\r\n\r\n",
    b"Subject: x\r\nFrom sender@example.com Mon Dec  7\r\nTo: y\r\n\r\n",
    b"Subject: x\r\nFrom sender@example.com Mon Dec  7\r\n",
    b": no name\r\nSubject: x\r\n\r\n",
    b"Subject : space before the colon\r\n\r\n",
    b"no colon at all\r\nSubject: x\r\n\r\n",
    b"Subject: x\r\nnot a field\r\nTo: y\r\n\r\n",
    b"Subj\xe9ct: 8-bit name\r\n\r\n",
    b"Subject: 8-bit \xe9\xff value\r\n\r\n",
    b"Subject: nul \x00 inside\r\n\r\n",
    b"Subject: form feed \x0c and vt \x0b\r\n\r\n",
    b"X\x00Y: nul in the name\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n",
    b"Content-Type: MULTIPART/alternative\r\nMIME-Version: 1.0\r\n\r\n",
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n",
    b"a:b:c\r\n::\r\n\r\n",
    b"Subject: x\r\n\r\n\r\n",  # two empty lines
    b"Subject: x\r\n" + b"Y" * 5000 + b": long\r\n\r\n",
    b"Subject: x\r\n\tcont\r\r\n\r\n",
    b"~!@#$%^&*()_+{}|\"<>?[]\\;',./`=: punctuation name\r\n\r\n",
]


@pytest.mark.parametrize("block", CRAFTED, ids=range(len(CRAFTED)))
def test_crafted_sections_parse_as_the_stdlib(block: bytes) -> None:
    _assert_same(block)


def test_well_formed_sections_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shapes the filter sees all day do not fall back (else there is no gain)."""
    assert headerparse._parse_simple(b"Subject: a\r\n b\r\nTo: x\r\n\r\n", Message)
    assert headerparse._parse_simple(b"Content-Type: text/plain\r\n", Entity)
    for fallback in (b"Subject: a\n\n", b" x\r\n", b"From a b\r\n", b"x\r\n", b"S: a\r\n\r\nb"):
        assert headerparse._parse_simple(fallback, Message) is None


PIECES = [b"Subject", b"To", b"Content-Type", b"From", b"X-A", b":", b": ", b" ", b"\t",
          b"\r\n", b"\n", b"\r", b"value", b"multipart/mixed", b"From ", b"\xe9", b"\x00",
          b"; boundary=\"q\"", b"=?utf-8?q?x?=", b"<a@b>", b"\r\n ", b"\r\n\r\n", b"::"]


def test_random_sections_parse_as_the_stdlib() -> None:
    rng = random.Random(20261207)
    for _ in range(4000):
        block = b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 30)))
        if rng.random() < 0.5:
            block += b"\r\n"
        _assert_same(block)


_DELIMITER = re.compile(rb"(?m)^--[^\r\n]*\r?\n")


def _sections(raw: bytes) -> list[bytes]:
    """The top-level section and what follows every delimiter-like line, each with and
    without its ending empty line (the MIME decoder passes the latter)."""
    out = []
    for start in [0, *(m.end() for m in _DELIMITER.finditer(raw))]:
        end = raw.find(b"\r\n\r\n", start)
        if end < 0:
            continue
        out += [raw[start:end + 4], raw[start:end + 2]]
    return out


@pytest.mark.corpora
def test_corpus_sections_parse_as_the_stdlib(corpora_dir: Path) -> None:
    messages = sections = fast = 0
    for _, stored in corpus_messages(corpora_dir):
        # as Postfix hands it over: CRLF, no mbox From line
        smtp = re.sub(rb"\r?\n", b"\r\n", strip_mbox_from(stored))
        for block in _sections(smtp):
            _assert_same(block)
            sections += 1
        lf_block = stored[:stored.find(b"\n\n") + 2]  # as stored: mbox From line, LF
        _assert_same(lf_block)
        top = smtp[:smtp.find(b"\r\n\r\n") + 4]
        fast += headerparse._parse_simple(top, Entity) is not None
        messages += 1
    assert messages >= 6000
    assert sections >= 2 * messages
    assert fast >= messages * 0.95, (fast, messages)  # the common case is the fast one

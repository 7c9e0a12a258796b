"""Text sniffing tests a literal with ``in`` before its "^..." pattern: same answers.

``classify_text`` (uuencode), ``UuDecoder.wants`` and ``YencDecoder.wants`` skip their
multi-line pattern when the text lacks the literal every match starts with; these
tests compare them with the bare patterns on text built around that literal.
"""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from decoders import filetype, uue, yenc

PIECES = [b"begin", b"begin ", b"begin-base64 ", b"644", b"0755", b"777 ", b" x.txt", b"\n",
          b"\r\n", b"\r", b"=ybegin ", b"=ybegin", b"=y", b"line=128 name=a", b"<html>",
          b"From: a@b\n", b"Subject: s\n", b" ", b"\t", b"Begin 644 x", b"8", b"\x00"]


def texts() -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(PIECES) | st.binary(max_size=3), max_size=30).map(b"".join)


def part(data: bytes) -> SimpleNamespace:
    return SimpleNamespace(size=len(data), data=lambda: data)


@given(texts())
def test_classify_text_finds_uuencode_as_its_pattern_does(head: bytes) -> None:
    expected = filetype._UUE.search(head[:65536]) is not None
    assert (filetype.classify_text(head) == "uue") == expected


@given(texts())
def test_the_decoders_want_what_their_patterns_find(data: bytes) -> None:
    assert uue.UuDecoder().wants(part(data)) == (uue._BEGIN.search(data) is not None)
    assert yenc.YencDecoder().wants(part(data)) == (yenc._BEGIN.search(data) is not None)


def test_each_kind_of_block_is_still_found() -> None:
    assert filetype.classify_text(b"hi\nbegin 644 a.txt\n#86)C\n`\nend\n") == "uue"
    assert filetype.classify_text(b"hi\nbegin\n") == "asc"
    assert uue.UuDecoder().wants(part(b"x\r\nbegin-base64 644 a.txt\r\nYQ==\r\n===="))
    assert not uue.UuDecoder().wants(part(b"we begin 644 here\n"))
    assert yenc.YencDecoder().wants(part(b"x\r\n=ybegin line=128 size=1 name=a\r\n"))
    assert not yenc.YencDecoder().wants(part(b"x =ybegin line=128 size=1 name=a\r\n"))

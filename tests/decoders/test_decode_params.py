"""MIME parameters are parsed once per header value (decoders.mimeutil.Entity), in linear
time (decoders.mimeparams), and read exactly as the stdlib reads them.

A Content-Type of kilobytes of junk parameters cost the stdlib's parser ~3 us per byte
on every ``get_param`` call; the decoder and the classifier ask for the charset, the
name, the file name and the boundary of every part.
"""

from __future__ import annotations

import email.message
import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decoders import mimeparams
from decoders.mimeparams import split_params
from decoders.mimeutil import Entity, filename, parse_headers

PIECES = ["; ", ";", "charset=", "utf-8", "\"iso-8859-1\"", "name=", "filename=", "a.txt",
          "\"x;y.pdf\"", "name*=", "UTF-8''%C3%A9t%C3%A9.doc", "name*0=", "name*1=", "\"part\"",
          "boundary=", "\"==b1==\"", "b2", " ", "=", "\"", "'", "*", "%", "\\", "\u00e9"]


def both(ctype: str, disposition: str) -> tuple[Message, Message]:
    head = (f"Content-Type: {ctype}\nContent-Disposition: {disposition}\n\n"
            ).encode("utf-8", "surrogateescape")
    plain = BytesHeaderParser(policy=compat32).parsebytes(head)
    return plain, BytesHeaderParser(_class=Entity, policy=compat32).parsebytes(head)


def readings(msg: Message) -> list[object]:
    out: list[object] = []
    for call in (lambda: msg.get_params(), lambda: msg.get_params(unquote=False),
                 lambda: msg.get_params(header="content-disposition"),
                 lambda: msg.get_param("charset"), lambda: msg.get_param("name"),
                 lambda: msg.get_filename(), lambda: msg.get_content_charset(),
                 lambda: msg.get_boundary(), lambda: msg.get_param("x", "none"),
                 lambda: msg.get_params(header="x-missing"), lambda: filename(msg)):
        try:
            out.append(call())
        except Exception as exc:  # the stdlib's own errors must be the same too
            out.append(type(exc).__name__)
    return out


@given(st.lists(st.sampled_from(PIECES), max_size=25).map("".join),
       st.lists(st.sampled_from(PIECES), max_size=12).map("".join))
def test_parameters_read_as_the_stdlib_reads_them(params: str, disposition: str) -> None:
    plain, cached = both("text/plain" + params, "attachment" + disposition)
    assert readings(cached) == readings(plain)
    assert readings(cached) == readings(plain)  # the second reading comes from the cache


def test_each_header_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = email.message.utils.decode_params

    def counting(params: list) -> list:
        calls.append(len(params))
        return original(params)

    monkeypatch.setattr(email.message.utils, "decode_params", counting)
    junk = "; " * 20000  # a 40 KB Content-Type, as seen in 2002 spam
    msg = parse_headers(f"Content-Type: text/plain{junk}; charset=utf-8; name=a.txt\n"
                        "Content-Disposition: attachment; filename=b.pdf\n".encode())
    assert isinstance(msg, Entity)
    for _ in range(3):
        assert msg.get_content_charset() == "utf-8"
        assert msg.get_filename() == "b.pdf" and msg.get_param("name") == "a.txt"
        assert msg.get_boundary() is None
        assert filename(msg) == "b.pdf"
    assert len(calls) == 2  # Content-Type once, Content-Disposition once


def test_a_changed_header_is_parsed_again() -> None:
    msg = parse_headers(b"Content-Type: text/plain; charset=us-ascii\n")
    assert msg.get_content_charset() == "us-ascii"
    msg.set_param("charset", "utf-8")
    assert msg.get_content_charset() == "utf-8"
    msg.replace_header("Content-Type", "multipart/mixed; boundary=zz")
    assert msg.get_boundary() == "zz" and msg.get_content_charset() is None


SPLIT_PIECES = [";", "\"", "\\", "\\\"", "=", " ", "a", "B", "*", "'"]


@given(st.lists(st.sampled_from(SPLIT_PIECES), max_size=30).map("".join))
def test_split_params_is_the_stdlib_split(value: str) -> None:
    assert split_params(value) == email.message._parseparam(value)  # type: ignore[attr-defined]


def test_the_stdlib_splitter_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(value: str) -> list[str]:
        raise AssertionError("quadratic stdlib splitter called")

    monkeypatch.setattr(email.message, "_parseparam", refuse)
    msg = parse_headers(b'Content-Type: text/plain; charset="utf-8"; name=a.txt\n')
    assert msg.get_content_charset() == "utf-8" and filename(msg) == "a.txt"


class _CountingPattern:
    """A compiled pattern whose ``match`` calls are counted."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.calls = 0

    def match(self, value: str, pos: int = 0) -> re.Match[str] | None:
        self.calls += 1
        return self.pattern.match(value, pos)


@pytest.mark.parametrize("junk", [
    '; a="' + ";" * 50000 + '"',  # semicolons inside one quoted value
    '; a="' + "x; " * 20000,  # a quote that never closes
    '; a="\\"' + ";" * 50000,  # an escaped quote inside it
])
def test_one_match_per_parameter_whatever_the_quoting(
        monkeypatch: pytest.MonkeyPatch, junk: str) -> None:
    """The stdlib counted the quotes from the start again at every ``;`` (64 KB of
    them: 2.4 s); the split looks at each character once."""
    counting = _CountingPattern(mimeparams._SEGMENT)
    monkeypatch.setattr(mimeparams, "_SEGMENT", counting)
    value = "text/plain" + junk
    assert split_params(value) == email.message._parseparam(value)  # type: ignore[attr-defined]
    assert counting.calls == 2  # the type and the one parameter

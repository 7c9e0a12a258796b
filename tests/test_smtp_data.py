"""Unit tests of the bulk DATA reader against a real asyncio StreamReader."""

from __future__ import annotations

import asyncio

import pytest

from scanner.smtp.data import DataState, read_data, unstuff


def _read(wire: list[bytes], *, line_limit: int = 1000, size_limit: int | None = None,
          stream_limit: int = 64) -> tuple[DataState, bytes, bytes]:
    """Feed ``wire`` in the given pieces; return state, content and what stayed unread."""

    async def run() -> tuple[DataState, bytes, bytes]:
        reader = asyncio.StreamReader(limit=stream_limit)
        for piece in wire:
            reader.feed_data(piece)
        reader.feed_eof()
        state, content = await read_data(reader, line_limit=line_limit,
                                         size_limit=size_limit)
        return state, content, await reader.read()

    return asyncio.run(run())


def test_empty_message() -> None:
    assert _read([b".\r\nQUIT\r\n"]) == (DataState.OK, b"", b"QUIT\r\n")


def test_pipelined_commands_after_the_end_stay_in_the_stream() -> None:
    state, content, rest = _read([b"Subject: x\r\n\r\nbody.\r\n.\r\nMAIL FROM:<a@b>\r\n"])
    assert (state, content, rest) == (DataState.OK, b"Subject: x\r\n\r\nbody.\r\n",
                                      b"MAIL FROM:<a@b>\r\n")


@pytest.mark.parametrize("split", range(1, 40))
def test_any_split_of_the_wire_gives_the_same_content(split: int) -> None:
    wire = b"A: 1\r\n\r\n..dot\r\n.x\r\nend.\r\n\r\n.\r\nNOOP\r\n"
    state, content, rest = _read([wire[:split], wire[split:]], stream_limit=8)
    assert (state, content, rest) == (DataState.OK, b"A: 1\r\n\r\n.dot\r\nx\r\nend.\r\n\r\n",
                                      b"NOOP\r\n")


def test_bare_lf_dot_is_not_the_end() -> None:
    state, content, _ = _read([b"a\n.\nb\r\n.\r\n"])
    assert (state, content) == (DataState.OK, b"a\n.\nb\r\n")


def test_line_limit_counts_crlf_and_spans_chunks() -> None:
    ok = b"x" * 98 + b"\r\n"  # exactly 100 bytes with CRLF
    assert _read([ok * 5 + b".\r\n"], line_limit=100, stream_limit=16)[0] is DataState.OK
    long = b"x" * 99 + b"\r\n"
    for limit in (16, 1000):
        assert _read([ok + long + b".\r\nRSET\r\n"], line_limit=100,
                     stream_limit=limit)[:3:2] == (DataState.TOO_LONG, b"RSET\r\n")


def test_size_limit_reads_to_the_end_and_refuses() -> None:
    body = b"y" * 50 + b"\r\n"
    state, content, rest = _read([body * 100 + b".\r\nQUIT\r\n"], size_limit=1000)
    assert (state, content, rest) == (DataState.TOO_MUCH, b"", b"QUIT\r\n")
    assert _read([body * 10 + b".\r\n"], size_limit=1000)[0] is DataState.OK


def test_client_gone_mid_data() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        _read([b"Subject: x\r\n\r\nno end"])


def test_unstuff() -> None:
    assert unstuff(b".a\r\n..b\r\nc.\r\n") == b"a\r\n.b\r\nc.\r\n"
    assert unstuff(b"plain\r\n") == b"plain\r\n"


@pytest.mark.parametrize("arg", [
    "<user@example.org>", "<user@example.org> SIZE=100 BODY=8BITMIME",
    "<first.last+tag@sub.example.org>  NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b",
    "<o'brien@example.org>", "<a.b@c>", "<a@b.c> (comment) SIZE=1",
    '<"quoted local"@example.org> X=1',
    "<user@[192.0.2.1]>", "<a..b@example.org>", "<@relay:user@example.org>",
    "<user@example.org", "user@example.org", "<üser@exämple.org> SMTPUTF8",
])
def test_address_fast_path_agrees_with_aiosmtpd(arg: str) -> None:
    from aiosmtpd.smtp import SMTP

    from scanner.smtp.server import FilterSMTP

    ours = FilterSMTP._getaddr(object.__new__(FilterSMTP), arg)
    theirs = SMTP._getaddr(object.__new__(SMTP), arg)
    assert ours == theirs


@pytest.mark.parametrize("value,code", [("9" * 5000, "552"), ("1" + "0" * 30, "552"),
                                        ("\u0661\u0662", "501"), ("+12", "501"),
                                        ("0" * 5000 + "12", None)])
def test_size_values_python_cannot_or_should_not_read(value: str, code: str | None) -> None:
    """A SIZE of more than 4300 digits made int() raise ValueError (Python's limit on
    converting long digit strings): a 451 from the session's exception handler, not
    552; Unicode digits (Arabic-Indic here, read as 12) are no RFC 1870 size-value."""
    from scanner.smtp.params import ParamError, check_mail_params

    if code is None:  # leading zeros: a small number
        check_mail_params([("SIZE", value)], 10**8, True)
        return
    with pytest.raises(ParamError) as caught:
        check_mail_params([("SIZE", value)], 10**8, True)
    assert caught.value.reply.startswith(code)

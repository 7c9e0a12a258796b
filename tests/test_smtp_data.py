"""Unit tests of the DATA reader, fed the wire in pieces as the listener feeds it."""

from __future__ import annotations

import pytest

from scanner.smtp.data import DataReader, DataState, unstuff


def _read(wire: list[bytes], *, line_limit: int = 1000,
          size_limit: int | None = None) -> tuple[DataState, bytes, bytes]:
    """Feed ``wire`` in the given pieces; return state, content and what was not taken
    (the listener's to read as commands)."""
    reader = DataReader(line_limit=line_limit, size_limit=size_limit)
    rest = b""
    for piece in wire:
        if reader.done:
            rest += piece
            continue
        taken = reader.feed(piece)
        rest += piece[taken:]
        assert taken == len(piece) or reader.done
    if not reader.done:
        raise EOFError("the client went away before the end of DATA")
    return reader.state, reader.content(), rest


def test_empty_message() -> None:
    assert _read([b".\r\nQUIT\r\n"]) == (DataState.OK, b"", b"QUIT\r\n")


def test_pipelined_commands_after_the_end_stay_in_the_stream() -> None:
    state, content, rest = _read([b"Subject: x\r\n\r\nbody.\r\n.\r\nMAIL FROM:<a@b>\r\n"])
    assert (state, content, rest) == (DataState.OK, b"Subject: x\r\n\r\nbody.\r\n",
                                      b"MAIL FROM:<a@b>\r\n")


@pytest.mark.parametrize("split", range(1, 40))
def test_any_split_of_the_wire_gives_the_same_content(split: int) -> None:
    """Also every split of the end-of-data line itself (the reader keeps the last bytes
    taken to find one across pieces)."""
    wire = b"A: 1\r\n\r\n..dot\r\n.x\r\nend.\r\n\r\n.\r\nNOOP\r\n"
    state, content, rest = _read([wire[:split], wire[split:]])
    assert (state, content, rest) == (DataState.OK, b"A: 1\r\n\r\n.dot\r\nx\r\nend.\r\n\r\n",
                                      b"NOOP\r\n")


def test_bare_lf_dot_is_not_the_end() -> None:
    state, content, _ = _read([b"a\n.\nb\r\n.\r\n"])
    assert (state, content) == (DataState.OK, b"a\n.\nb\r\n")


def test_line_limit_counts_crlf_and_spans_chunks() -> None:
    ok = b"x" * 98 + b"\r\n"  # exactly 100 bytes with CRLF
    assert _read([ok * 5 + b".\r\n"], line_limit=100)[0] is DataState.OK
    pieces = [(ok * 5)[i:i + 16] for i in range(0, len(ok * 5), 16)]
    assert _read([*pieces, b".\r\n"], line_limit=100)[0] is DataState.OK
    long = b"x" * 99 + b"\r\n"
    wire = ok + long + b".\r\nRSET\r\n"
    for size in (16, 1000):
        pieces = [wire[i:i + size] for i in range(0, len(wire), size)]
        assert _read(pieces, line_limit=100)[:3:2] == (DataState.TOO_LONG, b"RSET\r\n")


def test_size_limit_reads_to_the_end_and_refuses() -> None:
    body = b"y" * 50 + b"\r\n"
    state, content, rest = _read([body * 100 + b".\r\nQUIT\r\n"], size_limit=1000)
    assert (state, content, rest) == (DataState.TOO_MUCH, b"", b"QUIT\r\n")
    assert _read([body * 10 + b".\r\n"], size_limit=1000)[0] is DataState.OK


def test_client_gone_mid_data() -> None:
    with pytest.raises(EOFError):
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
def test_address_fast_path_agrees_with_the_full_parser(arg: str) -> None:
    """The regular-expression path for plain ``<local@domain>`` gives what the standard
    library's RFC 5322 parser gives (the path every other address takes)."""
    from scanner.smtp.commands import parse_address
    from scanner.smtp.server import FilterSMTP

    assert FilterSMTP._getaddr(object.__new__(FilterSMTP), arg) == parse_address(arg)


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


def test_fed_one_byte_at_a_time() -> None:
    """The listener feeds whatever a read returned; a byte per read is the worst split
    of every end-of-data candidate at once."""
    wire = b"A: 1\r\n\r\n..\r\n.\n.x\r\nx.\r\n\r\n.\r\nQUIT\r\n"
    whole = (DataState.OK, b"A: 1\r\n\r\n.\r\n\n.x\r\nx.\r\n\r\n", b"QUIT\r\n")
    assert _read([wire]) == whole
    assert _read([wire[i:i + 1] for i in range(len(wire))]) == whole
    assert _read([bytes([b]) for b in b".\r\nNOOP\r\n"]) == (DataState.OK, b"", b"NOOP\r\n")

"""Random SMTP and LMTP sessions against the real ``scanner serve`` (protocol fuzzing).

Hypothesis writes whole sessions: greetings, envelopes with good and broken addresses
and parameters, XFORWARD with junk, unknown commands, random bytes, NULs, overlong
lines, DATA with random content (8-bit, NUL, bare CR and LF, dot lines, lines that look
like the end of DATA with a bare LF: SMTP smuggling), and connections cut in the middle
of DATA. Each command waits for its reply, so every reply can be matched to what asked
for it. After every session:

* every line the filter sent is a well-formed reply (three digits, then ``-`` or a
  space); no traceback, no half reply;
* the next hop got exactly the messages whose DATA the filter answered 250 for (per
  recipient with LMTP), each once, with the content as sent after our prepended
  headers (a bare LF turned into CRLF: the next hop gets DATA, see README "Line ends
  on the way out"), and nothing from a session cut off or refused;
* the filter still relays an ordinary message (it did not crash or wedge).

The next hop is the test sink, a fake (this is a unit-level test of the protocol
layer); the same properties through a real Postfix are in test_postfix_*.py.
"""

from __future__ import annotations

import re
import smtplib
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from tests.helpers import message, start_filter

_REPLY = re.compile(rb"^[2-5][0-9][0-9][ -]")
_ADDED = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)+")
# a fixed header block, so prepended headers are the filter's only change and no
# spam tagging rewrites anything (subject_tag2 is off below)
_HEAD = (b"From: Fuzz <fuzz@example.org>\r\nTo: rcpt@example.test\r\n"
         b"Subject: fuzz\r\nMessage-ID: <fuzz@example.org>\r\n\r\n")


@pytest.fixture(scope="module")
def fuzz_filter(tmp_path_factory: pytest.TempPathFactory):
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    sink = Sink(free_port()).start()
    lmtp = free_port()
    proc, port = start_filter(tmp, sink.port, lmtp_port=lmtp,
                              extra='[policy]\nsubject_tag2 = ""\n')
    yield port, lmtp, sink, proc
    proc.stop()
    sink.stop()


# -- what a session is made of -----------------------------------------------------------

_addresses = st.sampled_from([
    b"<alice@example.org>", b"<>", b"<bob@example.test>", b"<\xc3\xa9l\xc3\xa8ve@example.org>",
    b"<a@b>", b"<no-at-sign>", b"<@route:a@b>", b"alice@example.org", b"<", b"<a b@c>",
    b"<x@[192.0.2.1]>", b"<" + b"l" * 300 + b"@example.org>", b"<a@b\x00c>",
])
_params = st.sampled_from([
    b"", b" BODY=8BITMIME", b" SMTPUTF8", b" SIZE=100", b" SIZE=abc", b" SIZE=99999999999",
    b" BODY=BINARYMIME", b" RET=HDRS ENVID=x+2By", b" NOTIFY=SUCCESS,FAILURE",
    b" ORCPT=rfc822;a@b", b" FOO=bar", b" =", b" NOTIFY=NEVER,SUCCESS",
])
_junk = st.binary(min_size=0, max_size=80).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_commands = st.one_of(
    st.sampled_from([b"EHLO postfix.test", b"HELO postfix.test", b"LHLO postfix.test",
                     b"EHLO", b"RSET", b"NOOP", b"NOOP x", b"VRFY bob", b"EXPN list",
                     b"HELP", b"DATA", b"BDAT 10", b"STARTTLS", b"AUTH PLAIN AAAA",
                     b"XFORWARD ADDR=192.0.2.7 NAME=mx.example.org",
                     b"XFORWARD ADDR=junk PORT=-1 PROTO=\xff", b"XFORWARD FOO=bar",
                     b"XFORWARD", b"MAIL", b"RCPT", b"mail from:<a@b>", b"QUITX"]),
    st.tuples(st.sampled_from([b"MAIL FROM:", b"RCPT TO:"]), _addresses, _params)
    .map(b"".join),
    _junk,
    st.just(b"NOOP " + b"x" * 70000),  # longer than max_line_length
)
_line = st.binary(max_size=120).map(lambda b: b.replace(b"\r\n", b"\r"))
_content = st.lists(st.one_of(
    _line,
    st.sampled_from([b".", b"..", b".x", b"\n.\n", b"\r.\r", b"\n.\r",
                     b"x\n.\r\nMAIL FROM:<evil@x>", b"\x00", b"\xff\xfe", b"From nobody",
                     b"\xe2\x82\xac" * 30, b"y" * 1100]),
), max_size=25)


@dataclass
class Session:
    """What the client sent and what came back."""

    replies: list[bytes] = field(default_factory=list)
    delivered: list[bytes] = field(default_factory=list)  # content answered 250 (by rcpt)
    closed: bool = False


def _read_reply(sock: socket.socket, buf: bytearray, session: Session) -> int | None:
    """One complete (possibly multi-line) reply: its code, or None if the filter hung up."""
    code = None
    while True:
        while b"\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                session.closed = True
                assert not buf, f"half a reply before the connection closed: {bytes(buf)!r}"
                return None
            buf += chunk
        line, _, rest = bytes(buf).partition(b"\r\n")
        buf[:] = rest
        session.replies.append(line)
        assert _REPLY.match(line), f"not an SMTP reply: {line[:200]!r}"
        code = int(line[:3])
        if line[3:4] == b" ":
            return code


def _dot_stuff(lines: list[bytes]) -> bytes:
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)


def _run_session(port: int, lmtp: bool, steps: list[tuple[str, object]]) -> Session:
    session = Session()
    try:
        _talk(port, lmtp, steps, session)
    except ConnectionError:  # the filter hung up first (e.g. after too many bad commands)
        session.closed = True
    return session


def _talk(port: int, lmtp: bool, steps: list[tuple[str, object]], session: Session) -> None:
    buf = bytearray()
    rcpts = 0  # recipients accepted in the open transaction (LMTP answers once for each)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        if _read_reply(sock, buf, session) != 220:
            return
        for kind, value in steps:
            if kind == "cmd":
                assert isinstance(value, bytes)
                sock.sendall(value + b"\r\n")
                code = _read_reply(sock, buf, session)
                upper = value.upper()
                if code == 354:  # a bare DATA step that was accepted: send a message
                    if not _send_content(sock, buf, session, [], lmtp, rcpts, cut=False):
                        return
                    rcpts = 0
                elif upper.startswith((b"EHLO", b"HELO", b"LHLO", b"MAIL ", b"RSET")) \
                        and code == 250:
                    rcpts = 0
                elif upper.startswith(b"RCPT TO:") and code == 250:
                    rcpts += 1
                if code is None:
                    return
                continue
            assert isinstance(value, list)
            sock.sendall(b"DATA\r\n")
            code = _read_reply(sock, buf, session)
            if code is None:
                return
            if code != 354:
                continue
            if not _send_content(sock, buf, session, value, lmtp, rcpts, cut=kind == "cut"):
                return
            rcpts = 0
        sock.sendall(b"QUIT\r\n")
        _read_reply(sock, buf, session)


def _send_content(sock: socket.socket, buf: bytearray, session: Session, lines: list[bytes],
                  lmtp: bool, rcpts: int, *, cut: bool) -> bool:
    """After 354: send the header block and ``lines`` (or half of it and hang up, when
    ``cut``); record what the filter accepted. False when the connection is gone."""
    stuffed = _HEAD + _dot_stuff(lines)
    if cut:
        sock.sendall(stuffed[: len(stuffed) // 2])
        sock.shutdown(socket.SHUT_RDWR)
        session.closed = True
        return False
    sock.sendall(stuffed + b".\r\n")
    finals = [_read_reply(sock, buf, session) for _ in range(max(1, rcpts) if lmtp else 1)]
    content = _HEAD + b"".join(ln + b"\r\n" for ln in lines)
    session.delivered += [content] * sum(1 for c in finals if c == 250)
    return None not in finals


_good_mail = st.tuples(
    st.sampled_from([b"<alice@example.org>", b"<>", b"<list-bounces@example.net>"]),
    st.sampled_from([b"", b" BODY=8BITMIME", b" SIZE=100", b" RET=HDRS ENVID=x+2By",
                     b" SMTPUTF8 BODY=8BITMIME"]),
).map(lambda t: b"MAIL FROM:" + t[0] + t[1])
_good_rcpt = st.tuples(
    st.sampled_from([b"<bob@example.test>", b"<carol@example.test>", b"<Dave@Example.TEST>"]),
    st.sampled_from([b"", b" NOTIFY=SUCCESS,FAILURE", b" ORCPT=rfc822;bob@example.test"]),
).map(lambda t: b"RCPT TO:" + t[0] + t[1])
_noise = st.lists(_commands, max_size=2)


@st.composite
def _transaction(draw: st.DrawFn) -> list[tuple[str, object]]:
    """An envelope that is mostly right, noise around it, then DATA (or a cut)."""
    steps: list[tuple[str, object]] = [("cmd", c) for c in draw(_noise)]
    steps.append(("cmd", draw(st.one_of(_good_mail, _good_mail, _good_mail, _commands))))
    steps += [("cmd", draw(st.one_of(_good_rcpt, _good_rcpt, _good_rcpt, _commands)))
              for _ in range(draw(st.integers(1, 3)))]
    steps += [("cmd", c) for c in draw(st.lists(_commands, max_size=1))]
    steps.append((draw(st.sampled_from(["data", "data", "data", "cut"])), draw(_content)))
    return steps


@st.composite
def _sessions(draw: st.DrawFn) -> tuple[bool, list[tuple[str, object]]]:
    lmtp = draw(st.booleans())
    steps: list[tuple[str, object]] = [("cmd", b"LHLO postfix.test" if lmtp
                                        else b"EHLO postfix.test")]
    for _ in range(draw(st.integers(1, 3))):
        steps += draw(_transaction())
    return lmtp, steps


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(script=_sessions())
def test_random_sessions_never_lose_duplicate_or_alter_mail(fuzz_filter, script):
    port, lmtp_port, sink, proc = fuzz_filter
    lmtp, steps = script
    before = len(sink.received)
    session = _run_session(lmtp_port if lmtp else port, lmtp, steps)
    # still alive and relaying; its 250 also means the sink has had everything before it
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("postfix.test")
    assert s.sendmail("alice@example.org", ["bob@example.test"], message("alive")) == {}
    s.quit()
    got = sink.received[before:]
    assert got and got[-1].data.endswith(message("alive"))
    # LMTP: one relayed copy for all of a transaction's recipients, one 250 per recipient
    relayed = [g for g in got[:-1] for _ in (g.recipients if lmtp else [None])]
    assert len(relayed) == len(session.delivered), (session.replies[-5:], len(got))
    for item, sent in zip(relayed, session.delivered, strict=True):
        # relayed over DATA (the sink offers no CHUNKING): a bare LF becomes CRLF
        content = re.sub(rb"(?<!\r)\n", b"\r\n", sent)
        assert item.data.endswith(content), item.data[:300]
        added = item.data[: len(item.data) - len(content)]
        assert _ADDED.fullmatch(added), added  # the filter's headers, nothing else
    assert not any("Traceback" in line for line in proc.log_lines())

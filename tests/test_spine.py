"""The SMTP/LMTP spine against a scriptable next hop: replies, parameters, XFORWARD,
limits and the transactional rule (no 250 before the next hop accepted)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from scanner.testing.postfix import dead_port, free_port
from scanner.testing.sink import Sink
from tests.helpers import at_data, message, smtp, start_filter


@pytest.fixture
def lmtp_sink():
    s = Sink(free_port(), lmtp=True).start()
    yield s
    s.stop()


@pytest.fixture
def scanner(tmp_path: Path, sink: Sink):
    proc, port = start_filter(tmp_path, sink.port, lmtp_port=free_port())
    yield proc, port
    proc.stop()


def test_ehlo_advertises_filter_extensions(scanner):
    _, port = scanner
    s = smtp(port)
    features = set(s.esmtp_features)
    assert {"pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "dsn",
            "xforward"} <= features
    s.quit()


def test_relays_and_quotes_next_hop_reply(scanner, sink):
    proc, port = scanner
    s = smtp(port)
    code, text = s.docmd("XFORWARD", "NAME=mx.example.org ADDR=192.0.2.7 PORT=4567 "
                         "PROTO=ESMTP HELO=mx.example.org SOURCE=REMOTE")
    assert code == 250
    raw = message("relay", body=".leading dot\r\nbody\r\n")
    s.mail("alice@example.org", ["BODY=8BITMIME", "ENVID=Mixed+2BCase", "RET=HDRS"])
    s.rcpt("bob@example.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Bob@Example.TEST"])
    code, text = s.data(raw)
    s.quit()
    assert code == 250
    assert text.decode() == (f"2.0.0 from MTA(smtp:[127.0.0.1]:{sink.port}): 250 2.0.0 Ok: "
                             "queued as SINK1")
    got = sink.wait_for(1)[0]
    assert got.sender == "alice@example.org"
    assert ("ENVID", "Mixed+2BCase") in got.mail_params
    assert ("RET", "HDRS") in got.mail_params
    assert ("BODY", "8BITMIME") in got.mail_params
    assert ("ORCPT", "rfc822;Bob@Example.TEST") in got.rcpt_params[0]
    assert got.xforward["ADDR"] == "192.0.2.7" and got.xforward["NAME"] == "mx.example.org"
    # our Received header first, then the original bytes unchanged
    assert got.data.startswith(b"Received: from postfix.test ([127.0.0.1])\r\n\tby scanner.test")
    assert got.data.endswith(raw)
    time.sleep(0.2)
    line = proc.summary_lines()[-1]
    assert "Passed CLEAN {RelayedInbound}, [192.0.2.7]:4567 [192.0.2.7] <alice@example.org> ->"\
        " <bob@example.test>" in line
    assert "Message-ID: <relay@example.org>" in line and "queued_as: SINK1" in line


def test_many_recipients_and_transactions_on_one_connection(scanner, sink):
    _, port = scanner
    s = smtp(port)
    rcpts = [f"user{i}@example.test" for i in range(50)]
    for n in range(3):
        refused = s.sendmail("alice@example.org", rcpts, message(f"batch {n}"))
        assert refused == {}
    s.rset()
    assert s.noop()[0] == 250
    s.quit()
    got = sink.wait_for(3)
    assert len(got) == 3 and all(g.recipients == rcpts for g in got)


def test_next_hop_temporary_rcpt_failure_defers_everything(scanner, sink):
    _, port = scanner
    sink.behaviour.rcpt_reply = (lambda r: "450 4.2.0 try later" if r.startswith("b")
                                 else "250 2.1.5 Ok")
    s = smtp(port)
    with pytest.raises(smtplib_error()) as err:
        s.sendmail("alice@example.org", ["a@example.test", "b@example.test"], message("t"))
    assert err.value.smtp_code == 451
    s.quit()
    assert sink.received == []  # nothing delivered: Postfix's retry cannot duplicate


def test_next_hop_permanent_failure_is_passed_back(scanner, sink):
    _, port = scanner
    sink.behaviour.data_reply = lambda r: "554 5.7.1 content refused"
    s = smtp(port)
    with pytest.raises(smtplib_error()) as err:
        s.sendmail("alice@example.org", ["a@example.test"], message("p"))
    assert err.value.smtp_code == 554
    assert b"5.7.1 from MTA(smtp:[127.0.0.1]" in err.value.smtp_error
    s.quit()


def test_mixed_outcome_over_smtp_sends_dsn_to_sender(scanner, sink):
    _, port = scanner
    sink.behaviour.rcpt_reply = (lambda r: "550 5.1.1 no such user" if r.startswith("gone")
                                 else "250 2.1.5 Ok")
    s = smtp(port)
    s.mail("alice@example.org", ["ENVID=env1"])
    s.rcpt("bob@example.test")
    s.rcpt("gone@example.test", ["NOTIFY=FAILURE"])
    code, _ = s.data(message("mixed"))
    s.quit()
    assert code == 250
    got = sink.wait_for(2)
    assert got[0].recipients == ["bob@example.test"]
    dsn = got[1]
    assert dsn.sender == "<>" and dsn.recipients == ["alice@example.org"]
    assert b"Final-Recipient: rfc822; gone@example.test" in dsn.data
    assert b"Status: 5.1.1" in dsn.data and b"Original-Envelope-Id: env1" in dsn.data


def test_next_hop_down_gives_451(tmp_path: Path):
    with dead_port() as dead:
        _next_hop_down_gives_451(tmp_path, dead)


def _next_hop_down_gives_451(tmp_path: Path, dead: int) -> None:
    proc, port = start_filter(tmp_path, dead)
    try:
        s = smtp(port)
        with pytest.raises(smtplib_error()) as err:
            s.sendmail("alice@example.org", ["a@example.test"], message("down"))
        assert err.value.smtp_code == 451
        assert b"4.4.1" in err.value.smtp_error
        s.quit()
    finally:
        proc.stop()


def test_next_hop_hanging_gives_451_within_timeout(scanner, sink):
    _, port = scanner
    sink.behaviour.delay = 6  # the filter's reinject timeout is 3 s
    s = smtp(port)
    started = time.monotonic()
    with pytest.raises(smtplib_error()) as err:
        s.sendmail("alice@example.org", ["a@example.test"], message("hang"))
    assert err.value.smtp_code == 451
    assert time.monotonic() - started < 6
    s.quit()


@pytest.mark.parametrize("answer", ["600 6.0.0 what", "2500 queued", "250garbage",
                                    "550-5.0.0 no\r\n250 2.0.0 ok",
                                    "250-2.0.0 ok\r\n550 5.0.0 no"])
def test_a_malformed_final_reply_of_the_next_hop_is_a_451(scanner, sink, answer: str):
    """A final reply that is not one well-formed 2xx-5xx reply leaves the outcome
    unknown: 451 (the next hop may have queued it: SMTP's duplicate window), never its
    code passed on (Postfix bounces on a 600; a '550-' then '250' read as 250 loses a
    message the next hop refused)."""
    _, port = scanner
    sink.behaviour.data_reply = lambda rcpt: answer
    s = smtp(port)
    with pytest.raises(smtplib_error()) as err:
        s.sendmail("alice@example.org", ["a@example.test"], message("odd"))
    assert err.value.smtp_code == 451
    assert b"garbage from next hop" in err.value.smtp_error
    sink.behaviour.data_reply = lambda rcpt: "250 2.0.0 Ok: queued as SINK2"
    assert s.sendmail("alice@example.org", ["a@example.test"], message("fine")) == {}
    s.quit()


def test_idle_timeout_does_not_cut_a_message_being_scanned_or_sent(tmp_path: Path,
                                                                   sink: Sink):
    """aiosmtpd's timer was reset per command only: server.idle_timeout (300 s) ran from
    the DATA command through the body and the whole scan and reinjection, which may
    take server.message_timeout (600 s), so a slow message was cut off silently (no
    reply, its processing cancelled) and met the same end at every retry. It is an
    idle timeout again: a client that stops sending mid-DATA is still dropped."""
    proc, port = start_filter(tmp_path, sink.port, server_extra="idle_timeout = 1")
    try:
        sink.behaviour.delay = 2  # the next hop answers after the idle timeout
        s = smtp(port)
        assert s.sendmail("a@example.org", ["b@example.test"], message("slow")) == {}
        s.quit()
        with at_data(port) as (conn, f):
            for _ in range(3):  # a slow body, each piece within the idle time
                conn.sendall(b"Subject: trickle\r\n")
                time.sleep(0.5)
            conn.sendall(b"\r\nbody\r\n")  # then it stalls: dropped, nothing sent on
            assert f.readline().startswith(b"421 4.4.2 ")  # said why (was a silent close)
            assert f.readline() == b""
    finally:
        proc.stop()
    assert len(sink.wait_for(1)) == 1
    time.sleep(0.5)
    assert len(sink.received) == 1


def test_idle_timeout_counts_from_the_last_command(tmp_path: Path, sink: Sink):
    """The idle timer is not re-made at every command: one armed timer fires and, when
    the client was heard from since, waits again for the rest; the scan cancels it
    and the reply re-arms it. A client active for three idle times stays; once quiet
    it gets 421 an idle time after its last command, not earlier and not much later."""
    proc, port = start_filter(tmp_path, sink.port, server_extra="idle_timeout = 1")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            f = conn.makefile("rb")
            assert f.readline().startswith(b"220 ")
            conn.sendall(b"HELO postfix.test\r\nMAIL FROM:<a@example.org>\r\n"
                         b"RCPT TO:<b@example.test>\r\nDATA\r\n")
            assert [f.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
            conn.sendall(message("idle") + b".\r\n")
            assert f.readline().startswith(b"250 ")
            end = time.monotonic() + 3
            while time.monotonic() < end:  # a NOOP every 0.3 s for three idle times
                conn.sendall(b"NOOP\r\n")
                assert f.readline().startswith(b"250 ")
                time.sleep(0.3)
            conn.sendall(b"NOOP\r\n")
            assert f.readline().startswith(b"250 ")
            last = time.monotonic()
            assert f.readline().startswith(b"421 4.4.2 ")
            quiet = time.monotonic() - last
            assert 0.5 <= quiet < 5, quiet  # 1 s, with room for a loaded machine
    finally:
        proc.stop()


def test_lmtp_gives_one_reply_per_recipient(tmp_path: Path, sink: Sink):
    lmtp_port = free_port()
    proc, _ = start_filter(tmp_path, sink.port, lmtp_port=lmtp_port)
    sink.behaviour.rcpt_reply = (lambda r: "550 5.1.1 unknown" if r.startswith("x")
                                 else "450 4.2.1 busy" if r.startswith("y") else "250 2.1.5 Ok")
    try:
        import smtplib
        lm = smtplib.LMTP("127.0.0.1", lmtp_port)
        lm.ehlo("postfix.test")
        lm.mail("alice@example.org")
        for r in ("a@example.test", "x@example.test", "y@example.test"):
            lm.rcpt(r)
        lm.putcmd("data")
        assert lm.getreply()[0] == 354
        lm.send(message("lmtp") + b".\r\n")
        codes = [lm.getreply()[0] for _ in range(3)]
        lm.quit()
    finally:
        proc.stop()
    assert codes == [250, 550, 451]
    got = sink.wait_for(1)
    assert got[0].recipients == ["a@example.test"]


def test_a_utf8_xforward_helo_reaches_the_next_hop_as_sent(scanner, sink):
    """XFORWARD HELO of an SMTPUTF8 client (its UTF-8 octets xtext-escaped, as Postfix
    sends it) goes on with the same octets, not encoded twice."""
    _, port = scanner
    helo = "+D0+BF+D0+BE+D1+87+D1+82+D0+B0.+D0+BF+D1+80+D0+B8+D0+BC+D0+B5+D1+80.+D1+80+D1+84"
    s = smtp(port)
    assert s.docmd("XFORWARD", f"ADDR=192.0.2.7 HELO={helo}")[0] == 250
    s.sendmail("jürgen@example.org", ["bob@example.test"], message("utf8helo"),
               mail_options=["SMTPUTF8"])
    s.quit()
    got = sink.wait_for(1)[0]
    assert got.xforward["HELO"] == "почта.пример.рф"


def test_xforward_refused_inside_transaction_and_on_garbage(scanner):
    _, port = scanner
    s = smtp(port)
    assert s.docmd("XFORWARD", "ADDR=not-an-ip")[0] == 501
    assert s.docmd("XFORWARD", "BOGUS=1")[0] == 501
    assert s.docmd("XFORWARD", "")[0] == 501
    assert s.docmd("XFORWARD", "ADDR=[UNAVAILABLE] NAME=+ZZ")[0] == 501
    assert s.docmd("XFORWARD", "ADDR=IPV6:2001:db8::1 NAME=[UNAVAILABLE]")[0] == 250
    s.mail("alice@example.org")
    assert s.docmd("XFORWARD", "ADDR=192.0.2.1")[0] == 503
    s.quit()


def test_xforward_only_from_configured_hosts(tmp_path: Path, sink: Sink):
    proc, port = start_filter(tmp_path, sink.port,
                              server_extra='xforward_hosts = ["192.0.2.0/24"]')
    try:
        s = smtp(port)
        assert "xforward" not in s.esmtp_features
        assert s.docmd("XFORWARD", "ADDR=192.0.2.1")[0] == 550
        s.quit()
    finally:
        proc.stop()


def test_bad_parameters_and_commands(scanner):
    _, port = scanner
    s = smtp(port)
    assert s.docmd("MAIL FROM:<a@example.org> FOO=bar")[0] == 555
    assert s.docmd("MAIL FROM:<a@example.org> BODY=9BIT")[0] == 501
    assert s.docmd("MAIL FROM:<a@example.org> SIZE=999999999999")[0] == 552
    assert s.docmd("RCPT TO:<b@example.test>")[0] == 503
    assert s.docmd("MAIL FROM:<>")[0] == 250
    assert s.docmd("RCPT TO:<b@example.test> NOTIFY=SOMETIMES")[0] == 501
    assert s.docmd("RCPT TO:<b@example.test> ORCPT=rfc822")[0] == 501
    assert s.docmd("DATA")[0] == 503
    assert s.docmd("FROB")[0] == 500
    code, text = s.docmd("X" * 70000)
    assert code == 500
    s.quit()


def test_addresses_the_email_parser_trips_over_are_malformed(scanner):
    """Python's address parser raises IndexError on a lone "<" (found by
    tests/test_smtp_fuzz.py): a 553 like any malformed address, no traceback."""
    proc, port = scanner
    s = smtp(port)
    for junk in ("<", "< ", "<\t"):
        assert s.docmd("MAIL FROM:" + junk)[0] == 553
    assert s.docmd("MAIL FROM:<a@example.org>")[0] == 250
    assert s.docmd("RCPT TO:<")[0] == 553
    assert s.docmd("RCPT TO:<>")[0] == 501  # the null path is no recipient
    assert s.docmd("RCPT TO:<b@example.test>")[0] == 250
    s.quit()
    assert not any("Traceback" in line for line in proc.log_lines())


def test_oversized_and_long_lines_are_refused(tmp_path: Path, sink: Sink):
    proc, port = start_filter(tmp_path, sink.port,
                              server_extra="max_message_size = 20000\nmax_line_length = 2000")
    try:
        s = smtp(port)
        big = message("big", body=("x" * 900 + "\r\n") * 30)
        with pytest.raises(smtplib_error()) as err:
            s.sendmail("a@example.org", ["b@example.test"], big)
        assert err.value.smtp_code == 552
        with pytest.raises(smtplib_error()) as err:
            s.sendmail("a@example.org", ["b@example.test"], message("long", body="y" * 3000))
        assert err.value.smtp_code == 500
        assert s.noop()[0] == 250  # the session goes on after both refusals
        s.quit()
    finally:
        proc.stop()
    assert sink.received == []


def test_binary_and_8bit_content_is_kept(scanner, sink):
    _, port = scanner
    raw = (b"From: a@example.org\r\nSubject: caf\xe9 \xff\r\nTo: b@example.test\r\n\r\n"
           b"nul\x00byte\r\n\xc3\xa9t\xc3\xa9\r\nlone\rcr\r\n")
    s = smtp(port)
    s.sendmail("a@example.org", ["b@example.test"], raw, mail_options=["BODY=8BITMIME"])
    s.sendmail("j\u00fcrgen@example.org", ["m\u00fcller@example.test"], raw,
               mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    s.quit()
    got = sink.wait_for(2)
    assert all(g.data.endswith(raw) for g in got)
    assert got[1].sender == "j\u00fcrgen@example.org"
    assert ("SMTPUTF8", None) in got[1].mail_params


def test_client_disconnect_mid_data_delivers_nothing(scanner, sink):
    _, port = scanner
    sock = socket.create_connection(("127.0.0.1", port))
    f = sock.makefile("rb")
    f.readline()
    for line in (b"EHLO x\r\n", b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.test>\r\n",
                 b"DATA\r\n"):
        sock.sendall(line)
        while True:
            reply = f.readline()
            if reply[3:4] != b"-":
                break
    sock.sendall(b"Subject: cut\r\n\r\nhalf a mess")
    sock.close()
    time.sleep(1)
    assert sink.received == []
    s = smtp(port)  # the server is still fine
    assert s.noop()[0] == 250
    s.quit()


def smtplib_error():
    import smtplib
    return (smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused,
            smtplib.SMTPResponseException)


def test_next_hop_connection_is_reused_and_a_dead_one_replaced(scanner, sink):
    _, port = scanner
    s = smtp(port)
    for i in range(5):
        assert s.sendmail("a@example.org", ["b@example.test"], message(f"reuse {i}")) == {}
    assert len(sink.connections) == 1  # one worker, one pooled connection
    sink.drop_connections()  # the next hop closes idle connections
    assert s.sendmail("a@example.org", ["b@example.test"], message("after drop")) == {}
    s.quit()
    assert len(sink.wait_for(6)) == 6
    assert len(sink.connections) == 2


def test_pipelined_commands_get_their_replies_in_order(scanner, sink):
    _, port = scanner
    sock = socket.create_connection(("127.0.0.1", port))
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"EHLO client.test\r\n")
    while f.readline()[3:4] == b"-":
        pass
    sock.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n"
                 b"RCPT TO:<c@example.test> NOTIFY=NEVER\r\nRCPT TO:<d@example.test> FOO=1\r\n"
                 b"DATA\r\n")
    codes = [f.readline()[:3] for _ in range(5)]
    assert codes == [b"250", b"250", b"250", b"555", b"354"]
    sock.sendall(b"Subject: piped\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert f.readline().startswith(b"250 2.0.0 from MTA")
    assert f.readline().startswith(b"221")
    sock.close()
    assert sink.wait_for(1)[0].recipients == ["b@example.test", "c@example.test"]


def _session(port: int, greeting: bytes = b"EHLO postfix.test\r\n") -> tuple[socket.socket, object]:
    """A raw connection past the greeting and EHLO/LHLO (replies read)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = conn.makefile("rb")
    f.readline()
    conn.sendall(greeting)
    while f.readline()[3:4] == b"-":
        pass
    return conn, f


def _all_replies(f: object) -> list[bytes]:
    """Every reply line until the filter closes the connection."""
    lines = []
    while line := f.readline():  # type: ignore[attr-defined]
        lines.append(line.rstrip(b"\r\n"))
    return lines


def test_replies_held_for_pipelining_are_sent_before_the_connection_closes(scanner, sink):
    """A reply to a pipelined command waits for the next one's to go out in one write.
    When that next command closed the connection (QUIT, a wrong greeting, one unknown
    command too many) while still more commands were buffered, the waiting replies were
    dropped: after 'DATA ... . QUIT NOOP' the message was relayed but its 250 never
    sent, so the client would send it again."""
    _, port = scanner
    conn, f = _session(port)
    conn.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
    assert [f.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
    conn.sendall(message("piped quit") + b".\r\nQUIT\r\nNOOP\r\nRSET\r\n")
    replies = _all_replies(f)
    conn.close()
    assert len(sink.wait_for(1)) == 1
    assert [r[:4] for r in replies] == [b"250 ", b"221 "], replies
    assert replies[0].startswith(b"250 2.0.0 from MTA(")

    conn, f = _session(port)
    conn.sendall(b"NOOP\r\nLHLO x\r\nNOOP\r\n")
    replies = _all_replies(f)
    conn.close()
    assert [r[:9] for r in replies] == [b"250 2.0.0", b"421 4.3.5"], replies

    conn, f = _session(port)
    conn.sendall(b"".join(b"BOGUS%d\r\n" % i for i in range(7)))
    replies = _all_replies(f)
    conn.close()
    assert [r[:4] for r in replies] == [b"500 "] * 4 + [b"502 "], replies


@pytest.mark.parametrize("pipelined", [False, True])
def test_a_reply_echoing_a_non_utf8_byte_is_still_sent(scanner, pipelined: bool):
    """A reply that quotes the client (a bad XFORWARD attribute name) with a byte that is
    not UTF-8 could not be encoded: the exception became a 451, and with PIPELINING it
    took the replies waiting for the same write with it (four commands, one reply)."""
    _, port = scanner
    conn, f = _session(port)
    commands = [b"XFORWARD N\xffME=x\r\n", b"MAIL FROM:<a@example.org>\r\n",
                b"RCPT TO:<b@example.test>\r\n", b"RSET\r\n", b"QUIT\r\n"]
    if pipelined:
        conn.sendall(b"".join(commands))
        replies = _all_replies(f)
    else:
        replies = []
        for command in commands:
            conn.sendall(command)
            replies.append(f.readline().rstrip(b"\r\n"))
    conn.close()
    assert [r[:9] for r in replies] == [b"501 5.5.4", b"250 2.1.0", b"250 2.1.5", b"250 2.0.0",
                                        b"221 2.0.0"], replies
    assert b"N?ME" in replies[0]


def test_commands_we_do_not_offer_are_refused_as_postfix_does(scanner):
    """AUTH and STARTTLS are not advertised: aiosmtpd answered 538 (encryption required)
    and 454 4.0.0 (a temporary failure, so a client might try again) and listed AUTH in
    HELP. An LMTP session is asked for LHLO, not HELO, before MAIL."""
    _, port = scanner
    conn, f = _session(port)
    replies = []
    for command in (b"AUTH PLAIN AGEAYg==\r\n", b"STARTTLS\r\n", b"HELP\r\n"):
        conn.sendall(command)
        replies.append(f.readline().rstrip(b"\r\n"))
    conn.close()
    assert replies[0] == b"503 5.5.1 Error: authentication not enabled"
    assert replies[1] == b"502 5.5.1 Error: command not implemented"
    assert replies[2].startswith(b"250 ") and b"AUTH" not in replies[2], replies
    lmtp_port = scanner[0].ports[1]
    with socket.create_connection(("127.0.0.1", lmtp_port), timeout=30) as conn:
        f = conn.makefile("rb")
        f.readline()
        conn.sendall(b"MAIL FROM:<a@example.org>\r\nQUIT\r\n")
        assert f.readline() == b"503 5.5.1 Error: send LHLO first\r\n"

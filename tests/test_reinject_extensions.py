"""Reinjection to a next hop that lacks ESMTP extensions (scripted next hop).

EHLO refused (but not with 421): HELO, as RFC 5321 3.2 allows and Postfix's smtp
client and amavis do, and then no extension at all (no parameters, no pipelining, no
XFORWARD, no BDAT).
SIZE: a message over the advertised limit is refused before MAIL. DSN: parameters left
out, and the loss logged. 8BITMIME: see also test_reinject_8bitmime.py (real Postfix).
"""

from __future__ import annotations

import pytest

from scanner.reinject.deliver import Outgoing
from scanner.task import ClientInfo, Recipient
from tests.scripted_hop import Script, bdat_batches, run_script

ALL_PARAMS = (("BODY", "8BITMIME"), ("RET", "HDRS"), ("ENVID", "QQ314159"))
RCPT_PARAMS = (("NOTIFY", "SUCCESS,FAILURE"), ("ORCPT", "rfc822;b@example.test"))
CONTENT = b"Subject: t\r\nMIME-Version: 1.0\r\n\r\nplain ASCII body\r\n"


def _out(data: bytes = CONTENT, params: tuple = ALL_PARAMS, rcpts: int = 1) -> Outgoing:
    return Outgoing("a@example.org",
                    [Recipient(f"r{i}@example.test", RCPT_PARAMS) for i in range(rcpts)],
                    params, data, ClientInfo(addr="192.0.2.1", name="client.example"))


def _transaction(script: Script) -> list[str]:
    """The commands after the greeting, up to the content (no QUIT)."""
    return [c for c in script.commands[1:] if c != "QUIT"]


@pytest.mark.parametrize("ehlo_reply", ["502 5.5.2 Error: command not recognized",
                                        "500 5.5.1 Command unrecognized: \"EHLO x\"",
                                        "450 4.7.1 Try HELO"])
@pytest.mark.parametrize("rcpts", [1, 2])
def test_a_next_hop_that_refuses_ehlo_gets_helo_and_no_extension(ehlo_reply: str,
                                                                 rcpts: int):
    """Before: a refused EHLO made every message a 451, retried for ever. Now HELO,
    then MAIL/RCPT without any parameter, no XFORWARD, DATA (not BDAT), one command at
    a time; the message is delivered."""
    script = Script(ehlo_reply=ehlo_reply)
    replies = run_script(script, [_out(rcpts=rcpts)] * 2, all_or_nothing=False)
    assert all(r.startswith("250 2.0.0 from MTA(smtp:") for m in replies for r in m), replies
    assert script.commands[:2] == ["EHLO scanner.test", "HELO scanner.test"]
    one = ["MAIL FROM:<a@example.org>",
           *[f"RCPT TO:<r{i}@example.test>" for i in range(rcpts)], "DATA"]
    assert _transaction(script)[1:] == one * 2  # one connection, reused
    assert bdat_batches(script) == 0 and script.connections == 1
    assert script.contents == [CONTENT] * 2


@pytest.mark.parametrize("lmtp,reply", [(False, "421 4.3.2 Service shutting down"),
                                        (True, "502 5.5.2 Error: command not recognized")])
def test_no_helo_after_421_or_to_lmtp(lmtp: bool, reply: str):
    """421: the next hop is closing (Postfix's smtp client gives up too); LMTP has no
    HELO (RFC 2033): 451, nothing sent."""
    script = Script(lmtp=lmtp, ehlo_reply=reply)
    replies = run_script(script, [_out()], all_or_nothing=not lmtp)
    assert replies[0][0].startswith("451 4.4.1 Next hop"), replies
    assert reply in replies[0][0]
    assert not any(c.startswith(("HELO", "MAIL")) for c in script.commands)


def test_extensions_offered_are_still_used_after_ehlo():
    """The counter-check: with EHLO accepted the same message carries its parameters."""
    script = Script(chunking=False, extensions=["PIPELINING", "8BITMIME", "DSN", "SIZE 0"])
    run_script(script, [_out()])
    mail = next(c for c in script.commands if c.startswith("MAIL"))
    assert mail == (f"MAIL FROM:<a@example.org> BODY=8BITMIME RET=HDRS ENVID=QQ314159 "
                    f"SIZE={len(CONTENT)}")
    rcpt = next(c for c in script.commands if c.startswith("RCPT"))
    assert rcpt == "RCPT TO:<r0@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.test"


@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
def test_a_message_over_the_advertised_size_is_refused_before_mail(chunking: bool):
    """SIZE 100 and a bigger message: 552 5.3.4 for every recipient, as Postfix's smtp
    client gives ("message size ... exceeds size limit ... of server"), and neither MAIL
    nor content goes out. Before: MAIL went out, and with BDAT the whole content in the
    same batch (a next hop that does not check SIZE= at MAIL took it)."""
    extensions = ["PIPELINING", "8BITMIME", "SIZE 100", *(["CHUNKING"] if chunking else [])]
    script = Script(extensions=extensions)
    big = CONTENT + b"x" * 200 + b"\r\n"
    replies = run_script(script, [_out(big, rcpts=2), _out()], all_or_nothing=False)
    assert [r[:10] for r in replies[0]] == ["552 5.3.4 "] * 2, replies
    assert f"message size {len(big)} exceeds size limit 100" in replies[0][0]
    assert replies[1][0].startswith("250 2.0.0 from MTA(smtp:"), replies
    assert sum(c.startswith("MAIL") for c in script.commands) == 1
    assert script.contents == [CONTENT] and script.connections == 1


def test_a_message_at_the_advertised_size_goes_out():
    """The limit is inclusive (RFC 1870: larger than the limit is refused)."""
    script = Script(extensions=["PIPELINING", f"SIZE {len(CONTENT)}"])
    replies = run_script(script, [_out()])
    assert replies[0][0].startswith("250 2.0.0 from MTA(smtp:"), replies


def test_dsn_parameters_are_left_out_and_the_loss_logged(caplog: pytest.LogCaptureFixture):
    """RFC 3461 4.1: no NOTIFY/ORCPT/RET/ENVID to a next hop without DSN; the sender's
    request for a success DSN is lost there, which the log says once per next hop."""
    script = Script(chunking=False)  # the scripted next hop offers no DSN
    with caplog.at_level("WARNING", logger="scanner"):
        replies = run_script(script, [_out(), _out()])
    assert all(r[0].startswith("250 2.0.0 from MTA(smtp:") for r in replies), replies
    assert [c for c in script.commands if c.startswith(("MAIL", "RCPT"))] == [
        "MAIL FROM:<a@example.org> BODY=8BITMIME", "RCPT TO:<r0@example.test>"] * 2
    lines = [r.getMessage() for r in caplog.records if "does not offer DSN" in r.getMessage()]
    assert len(lines) == 1, caplog.text


def test_declared_8bitmime_to_a_next_hop_without_it_goes_out_converted():
    """The scripted next hop's side of test_reinject_8bitmime.py: BODY= left out, the
    8-bit text part quoted-printable, SIZE counting the converted content."""
    data = (b"Subject: t\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n")
    script = Script(chunking=False, extensions=["PIPELINING", "SIZE 1000"])
    replies = run_script(script, [_out(data)])
    assert replies[0][0].startswith("250 2.0.0 from MTA(smtp:"), replies
    converted = data.replace(b": 8bit", b": quoted-printable").replace(
        b"Gr\xc3\xbc\xc3\x9fe", b"Gr=C3=BC=C3=9Fe")
    assert script.contents == [converted]
    assert f"MAIL FROM:<a@example.org> SIZE={len(converted)}" in script.commands


def test_undeclared_8bit_content_goes_out_as_it_is():
    """No BODY=8BITMIME from the client: sent as it is, as Postfix's smtp client does."""
    data = b"Subject: t\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    script = Script(chunking=False, extensions=["PIPELINING"])
    replies = run_script(script, [_out(data, params=())])
    assert replies[0][0].startswith("250 2.0.0 from MTA(smtp:"), replies
    assert script.contents == [data]


def test_declared_8bitmime_that_cannot_be_converted_goes_as_it_is(caplog):
    """Not MIME (no MIME-Version: charset and structure unknown): sent unchanged without
    the BODY parameter, as Postfix's smtp client sends what it does not convert (amavis
    would refuse it 550 5.6.3 and so bounce mail real next hops take), and logged."""
    data = b"Subject: t\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    script = Script(chunking=False, extensions=["PIPELINING"])
    replies = run_script(script, [_out(data, rcpts=2)], all_or_nothing=False)
    assert [r[:3] for r in replies[0]] == ["250"] * 2, replies
    assert [c for c in script.commands if c.startswith("MAIL")] == ["MAIL FROM:<a@example.org>"]
    assert script.contents == [data]
    assert "cannot be converted safely" in caplog.text

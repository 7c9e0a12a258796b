"""Which bytes reach DKIM verification through a real Postfix: a body with a bare LF,
a bare CR or LF-only lines, sent as raw SMTP DATA to Postfix's injection smtpd, goes
through the content_filter to the filter, whose Authentication-Results (in the
delivered copy) says how its signatures verified. Needs root, postfix and nsd.

The filter itself keeps a bare CR (test_filter_keeps_a_bare_cr): what Postfix hands it
is what it verifies."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from scanner.testing.dns_server import DnsServer
from scanner.testing.sink import Sink
from tests.auth.conftest import Keys
from tests.auth.dkim_hand import hand_signed
from tests.helpers import at_data, start_filter
from tests.postfix_stack import Stack, require_postfix, split_delivered, wait_ids

pytestmark = pytest.mark.postfix


@pytest.fixture(scope="module")
def stack(dns_server: DnsServer) -> Iterator[Stack]:
    require_postfix()
    extra = f"""
[checks]
disabled = ["clamav", "dnsbl", "uribl", "bayes"]

[checks.settings.auth]
authserv_id = "scanner.test"
trusted_networks = ["192.0.2.250/32"]   # Postfix's 127.0.0.1 is then the untrusted client
[checks.settings.auth.dns]
resolvers = ["{dns_server.resolver}"]
timeout = 1.0
budget = 3.0
"""
    s = Stack(extra=extra).start()
    yield s
    s.remove()


def raw_send(stack: Stack, data: bytes) -> None:
    """DATA exactly as given (smtplib would turn every bare CR and LF into CRLF)."""
    stack.postfix.add_users("bob")
    stuffed = re.sub(rb"(?m)^\.", b"..", data)
    with socket.create_connection(("127.0.0.1", stack.postfix.smtpd_port), timeout=30) as c:
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"HELO client.test\r\nMAIL FROM:<alice@good.test>\r\n"
                  b"RCPT TO:<bob@example.test>\r\nDATA\r\n")
        assert [f.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        c.sendall(stuffed + b"\r\n.\r\nQUIT\r\n")
        assert f.readline()[:3] == b"250"


def dkimpy_signed(keys: Keys, message: bytes, canon: bytes) -> bytes:
    header, body = canon.split(b"/")
    return dkim.sign(message, b"s1", b"good.test", keys.files["k1"].read_bytes(),
                     canonicalize=(header, body), include_headers=[b"from", b"subject"]
                     ) + message


def dkim_results(stack: Stack, mid: str) -> list[str]:
    wait_ids(stack, {f"<{mid}@good.test>"}, 30)
    [path] = [p for p in stack.postfix.maildir_messages("bob")
              if f"{mid}@good.test".encode() in p.read_bytes()]
    head, _ = split_delivered(path.read_bytes())
    found = re.search(rb"Authentication-Results: scanner\.test;(.*?)\n(?![ \t])", head, re.S)
    assert found, head.decode(errors="replace")
    return re.findall(r"dkim=(\w+)", found.group(1).decode())


def message(mid: str, body: bytes) -> bytes:
    return (b"From: Alice <alice@good.test>\r\nTo: bob@example.test\r\nSubject: " +
            mid.encode() + b"\r\nMessage-ID: <" + mid.encode() + b"@good.test>\r\n\r\n" + body)


def test_bare_lf_reaches_the_filter_as_crlf(stack: Stack, dkim_keys: Keys) -> None:
    """Postfix ends a line at a bare LF and hands the filter CRLF: a signature that
    hashed the LF as a line end (dkimpy, OpenDKIM) passes; one that hashed it as data
    (Mail::DKIM, the hand signer) cannot, the bytes it signed no longer exist."""
    body = b"line one\nline two\r\n"
    raw_send(stack, dkimpy_signed(dkim_keys, message("lf1", body), b"simple/simple"))
    assert dkim_results(stack, "lf1") == ["pass"]
    hand = hand_signed(message("lf2", body), "simple/simple", [b"from", b"subject"],
                       dkim_keys.files["k1"].read_bytes())
    raw_send(stack, hand)
    assert dkim_results(stack, "lf2") == ["fail"]


def test_lf_only_message_verifies(stack: Stack, dkim_keys: Keys) -> None:
    signed = dkimpy_signed(dkim_keys, message("lf3", b"one\r\ntwo\r\n"), b"relaxed/relaxed")
    raw_send(stack, signed.replace(b"\r\n", b"\n"))
    assert dkim_results(stack, "lf3") == ["pass"]


def test_bare_cr_reaches_the_filter_as_a_space(stack: Stack, dkim_keys: Keys) -> None:
    """Postfix (3.7) turns a bare CR inside a line into a space before the filter sees
    it, and drops one before CRLF: a signature over the message as Postfix passes it
    on verifies, whatever the canonicalisation; one over the CR cannot pass behind
    Postfix (for any verifier)."""
    body = b"line one\rstill line one\r\nline two\r\n"
    spaced = body.replace(b"\r", b" ").replace(b" \n", b"\r\n")
    assert spaced == b"line one still line one\r\nline two\r\n"
    for mid, canon in (("cr1", b"simple/simple"), ("cr2", b"relaxed/relaxed")):
        signed = dkimpy_signed(dkim_keys, message(mid, spaced), canon)
        raw_send(stack, signed.replace(b"line one still", b"line one\rstill"))
        assert dkim_results(stack, mid) == ["pass"], canon
    raw_send(stack, dkimpy_signed(dkim_keys, message("cr3", body), b"simple/simple"))
    assert dkim_results(stack, "cr3") == ["fail"]
    # CR CR LF (a line end converted twice) arrives as CRLF: the extra CR is dropped
    signed = dkimpy_signed(dkim_keys, message("cr5", b"line one\r\nline two\r\n"),
                           b"simple/simple")
    raw_send(stack, signed.replace(b"line one\r\n", b"line one\r\r\n"))
    assert dkim_results(stack, "cr5") == ["pass"]


def test_filter_keeps_a_bare_cr(tmp_path: Path, sink: Sink) -> None:
    proc, port = start_filter(tmp_path, sink.port)
    try:
        with at_data(port) as (conn, reply):
            conn.sendall(message("cr4", b"line one\rstill one\r\nline two\r\n") + b".\r\n")
            assert reply.readline()[:3] == b"250"
        assert sink.wait_for(1)[-1].data.endswith(b"\r\n\r\nline one\rstill one\r\nline two\r\n")
    finally:
        proc.stop()

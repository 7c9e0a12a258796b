"""An LMTP listener on a Unix socket behind a real Postfix (``content_filter =
scanner:unix:PATH``, Postfix's lmtp client): mail delivered with amavis's trace header
for a socket, XFORWARD accepted from the socket (the original client in the log line),
the socket's group and mode as configured, a stale socket file left by a killed filter
replaced at the next start, and the file removed at a clean stop."""

from __future__ import annotations

import grp
import os
import re
import smtplib
import stat
import time
from pathlib import Path

import pytest

from scanner.testing.filter import FilterProcess
from tests.postfix_stack import (
    ProxyStack,
    Stack,
    require_postfix,
    split_delivered,
    wait_ids,
)

pytestmark = [pytest.mark.postfix, pytest.mark.slow]

POLICY = """
[checks]
disabled = ["auth", "dnsbl", "uribl", "clamav", "bayes"]
[policy]
local_domains = ["example.test"]
"""


def _socket_listener(sock: Path) -> str:
    return (f'\n[[listeners]]\npath = "{sock}"\nprotocol = "lmtp"\n'
            'socket_group = "postfix"\nsocket_mode = 0o660\n')


@pytest.fixture(scope="module")
def stack():
    require_postfix()
    s = Stack(protocol="lmtp", extra=POLICY)
    sock = s.base / "filter" / "lmtp.sock"
    s.postfix.filter = f"scanner:unix:{sock}"
    # the TCP listener stays (the test harness waits for its port); Postfix uses the socket
    text = s.filter.config_path.read_text() + _socket_listener(sock)
    s.filter = FilterProcess(s.base / "filter", text, s.filter.ports)
    s.sock = sock  # type: ignore[attr-defined]
    s.start()
    yield s
    s.remove()


def _msg(mid: str) -> bytes:
    return (f"From: alice@example.org\r\nTo: user@example.test\r\nSubject: socket {mid}\r\n"
            f"Message-ID: <{mid}@example.org>\r\n\r\nHello over a Unix socket.\r\n").encode()


def _send(stack: Stack, mid: str, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", stack.postfix.smtpd_port, timeout=30) as s:
        s.sendmail("alice@example.org", rcpts, _msg(mid))


def _delivered(stack: Stack | ProxyStack, mid: str) -> list[bytes]:
    return [p.read_bytes() for p in stack.postfix.maildir_messages()
            if f"<{mid}@example.org>".encode() in p.read_bytes()]


def test_mail_goes_through_the_socket_with_xforward(stack: Stack):
    sock: Path = stack.sock  # type: ignore[attr-defined]
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_gid == grp.getgrnam("postfix").gr_gid
    _send(stack, "unix1", ["user@example.test"])
    wait_ids(stack, {"<unix1@example.org>"}, 30)
    [raw] = _delivered(stack, "unix1")
    head, _ = split_delivered(raw)
    # amavis's form for a socket: the client's HELO, no address, "unix socket"
    trace = re.search(rb"Received: from mx\.postfix\.test\n\tby scanner\.test \(scanner, "
                      rb"unix socket\) with LMTP id [A-Za-z0-9_-]{12}\n", head)
    assert trace is not None, head.decode(errors="replace")
    # XFORWARD came through the socket: the log names Postfix's client, not "unknown"
    lines = [ln for ln in stack.filter.summary_lines() if "<unix1@example.org>" in ln]
    assert len(lines) == 1 and "Passed CLEAN" in lines[0]
    assert re.search(r"\}, LOCAL \[127\.0\.0\.1\]:\d+ ", lines[0]), lines[0]


def test_a_killed_filter_leaves_a_socket_the_next_start_replaces(stack: Stack):
    sock: Path = stack.sock  # type: ignore[attr-defined]
    stack.filter.kill()
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)  # left behind, nobody listening
    _send(stack, "unix2", ["user@example.test", "bob@example.test"])
    time.sleep(1)  # Postfix tries the socket, is refused, keeps the message queued
    stack.filter.start()
    wait_ids(stack, {"<unix2@example.org>"}, 60, copies=2)
    assert len(_delivered(stack, "unix2")) == 2
    stack.filter.stop()
    assert not os.path.lexists(sock)
    stack.filter.start()
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)


def test_before_queue_the_public_smtpd_proxies_through_the_socket():
    """``smtpd_proxy_filter = unix:PATH`` (``scanner postfix-config --proxy`` with an SMTP
    listener on a socket): the client's 250 comes after the scan, through the socket."""
    require_postfix()
    proxy = ProxyStack(extra=POLICY, unix_socket=True).start()
    try:
        assert any(line.strip() == f"-o smtpd_proxy_filter=unix:{proxy.socket}"
                   for line in (proxy.postfix.conf_dir / "master.cf").read_text().splitlines())
        with smtplib.SMTP("127.0.0.1", proxy.postfix.smtpd_port, timeout=30) as s:
            s.sendmail("alice@example.org", ["user@example.test"], _msg("proxy1"))
        wait_ids(proxy, {"<proxy1@example.org>"}, 30)
        [raw] = _delivered(proxy, "proxy1")
        assert re.search(rb"\(scanner, unix socket\) with ESMTP id ", raw), raw[:600]
    finally:
        proxy.remove()

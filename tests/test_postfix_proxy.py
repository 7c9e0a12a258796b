"""Before queue through Postfix's ``smtpd_proxy_filter``: a real public smtpd hands each
message to the real ``scanner serve`` listener before queueing it, with the settings
``scanner postfix-config --proxy`` prints (scanner.postfix_proxy).

The sending client itself gets the outcome at the end of DATA: 250 with the after-filter
smtpd's queue ID, a policy reject as 5xx (nothing queued, no bounce), every failure (the
filter down, killed in the middle of a scan, the next hop down) as 4xx with nothing
queued or delivered, so the client keeps the message; its retry is
delivered exactly once; a client sending BDAT with 8-bit text gets through intact. Needs
root and postfix (skipped with the reason otherwise).
"""

from __future__ import annotations

import concurrent.futures
import smtplib
import socket
import time

import pytest

from tests.postfix_stack import (
    BEFORE_QUEUE_POLICY,
    ProxyStack,
    connections_to,
    delivered_ids,
    require_postfix,
    split_delivered,
    summary_line,
    summary_lines,
)

pytestmark = pytest.mark.postfix

POLICY = """
[checks]
disabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]
enabled = ["*", "fault_injection"]
[checks.settings.fault_injection]
mode = "sleep"
seconds = 4
""" + BEFORE_QUEUE_POLICY


@pytest.fixture(scope="module")
def stack():
    require_postfix()
    s = ProxyStack(extra=POLICY).start()
    yield s
    s.remove()


def _msg(mid: str, sender: str = "alice@example.org", extra: bytes = b"") -> bytes:
    return (f"From: <{sender}>\r\nTo: bob@example.test\r\nSubject: proxy {mid}\r\n"
            f"Message-ID: <{mid}@example.org>\r\n").encode() + extra + b"\r\nHello.\r\n"


def _send(stack: ProxyStack, data: bytes, sender: str = "alice@example.org",
          rcpts: tuple[str, ...] = ("bob@example.test",)) -> tuple[int, bytes]:
    """One message through the public smtpd: the reply to the end of DATA."""
    with smtplib.SMTP("127.0.0.1", stack.postfix.smtpd_port, timeout=120) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.mail(sender)[0] == 250
        for rcpt in rcpts:
            assert smtp.rcpt(rcpt)[0] == 250
        return smtp.data(data)


def _nothing_kept(stack: ProxyStack, mid: str, seconds: float = 2.0) -> None:
    """Nothing of ``mid`` delivered or queued, and no bounce either: the client keeps
    the message (4xx) or was told it was refused (5xx)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert f"<{mid}@example.org>" not in delivered_ids(stack), stack.postfix.log_tail()
        time.sleep(0.2)
    # Postfix mails the postmaster about a proxy it could not use (notify_classes
    # "software"); that notice, from double-bounce, may still be on its way out
    queued = [e for e in stack.postfix.queue() if not e["sender"].startswith("double-bounce@")]
    assert queued == [], stack.postfix.log_tail()
    assert not stack.postfix.maildir_messages("alice")  # no DSN to the sender


def _delivered_once(stack: ProxyStack, mid: str, user: str = "bob",
                    timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        found = [p for p in stack.postfix.maildir_messages(user)
                 if f"<{mid}@example.org>".encode() in p.read_bytes()]
        if found:
            break
        assert time.monotonic() < deadline, stack.postfix.log_tail()
        time.sleep(0.1)
    time.sleep(0.5)  # a second copy would land right after the first
    assert delivered_ids(stack, user)[f"<{mid}@example.org>"] == 1
    return found[0].read_bytes()


def test_clean_mail_gets_the_after_filter_queue_id_and_is_delivered_once(stack):
    code, reply = _send(stack, _msg("clean", extra=b"X-Spam-Flag: YES\r\n"))
    assert code == 250, reply
    # amavis's 250 text, quoting the after-filter smtpd, reaches the sending client
    assert reply.startswith(b"2.0.0 from MTA(smtp:[127.0.0.1]:"), reply
    queue_id = reply.rsplit(b"queued as ", 1)[1].decode()
    head, body = split_delivered(_delivered_once(stack, "clean"))
    assert body == b"Hello.\n"
    assert b"\nX-Spam-Flag: NO\n" in head and b"X-Spam-Flag: YES" not in head  # forged one
    assert f"with ESMTP id {queue_id}".encode() in head  # the after-filter smtpd queued it
    # the public smtpd's own trace header comes first, then ours, then the after-filter's
    received = [ln for ln in head.split(b"\n") if ln.startswith(b"Received: ")]
    assert received[-1].startswith(b"Received: from client.example.org "), head
    assert received[-2].startswith(b"Received: from mx.postfix.test "), head
    line = summary_line(stack, "clean")
    assert "Passed CLEAN {RelayedInbound}" in line and f"queued_as: {queue_id}" in line
    assert "proxy-accept: END-OF-MESSAGE: 250 2.0.0 from MTA" in stack.postfix.log_text()


def test_a_policy_reject_reaches_the_sending_client_without_a_bounce(stack):
    code, reply = _send(stack, _msg("rejected", "promo@spam.example"),
                        sender="promo@spam.example")
    assert code == 554 and reply.startswith(b"5.7.0 Reject, id="), (code, reply)
    _nothing_kept(stack, "rejected")
    assert "Blocked SPAM {RejectedInbound" in summary_line(stack, "rejected")
    assert "proxy-reject: END-OF-MESSAGE: 554 5.7.0" in stack.postfix.log_text()


def test_recipients_with_different_destinies(stack):
    """Spam for a lover (passes) and for a recipient who discards it: one 250, one copy."""
    code, reply = _send(stack, _msg("mixed", "promo@spam.example"),
                        sender="promo@spam.example",
                        rcpts=("carol@example.test", "dave@example.test"))
    assert code == 250, reply
    head, _ = split_delivered(_delivered_once(stack, "mixed", user="carol"))
    assert b"\nX-Spam-Flag: YES\n" in head
    assert stack.postfix.maildir_messages("dave") == []
    lines = summary_lines(stack, "mixed", 2)
    assert "Passed SPAM" in lines[0] and "Blocked SPAM" in lines[1], lines


def test_the_filter_down_gives_4xx_and_nothing_is_kept(stack):
    stack.filter.stop()
    try:
        code, reply = _send(stack, _msg("down"))
        assert code == 451, reply  # Postfix's "4.3.0 Error: queue file write error"
        _nothing_kept(stack, "down")
    finally:
        stack.filter.start()
    code, reply = _send(stack, _msg("down"))  # the client's retry
    assert code == 250, reply
    _delivered_once(stack, "down")


def test_the_filter_killed_mid_scan_gives_4xx_and_the_retry_is_delivered_once(stack):
    data = _msg("killed", extra=b"X-Scanner-Fault: yes\r\n")  # held 4 s in the check
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(_send, stack, data)
        # with speed_adjust the public smtpd connects once it has the whole message
        deadline = time.monotonic() + 30
        while not connections_to(stack.filter_port):
            assert time.monotonic() < deadline, "the message never reached the filter"
            time.sleep(0.05)
        time.sleep(1.0)  # inside the 4 s the check holds it
        assert connections_to(stack.filter_port), "the kill must hit an open transaction"
        stack.filter.kill()  # SIGKILL master and workers while the scan runs
        code, reply = future.result(60)
    try:
        assert 400 <= code < 500, (code, reply)
        _nothing_kept(stack, "killed")
    finally:
        stack.filter.start()
    # the client retries; this time without the trigger header, so it passes at once
    code, reply = _send(stack, _msg("killed"))
    assert code == 250, reply
    _delivered_once(stack, "killed")


def test_the_next_hop_down_gives_4xx_and_nothing_is_kept(stack):
    stack.set_reinjection(up=False)
    try:
        code, reply = _send(stack, _msg("hopdown"))
        assert code == 451, reply
        _nothing_kept(stack, "hopdown")
        assert "TempFailedInbound" in summary_line(stack, "hopdown")
    finally:
        stack.set_reinjection(up=True)
    code, reply = _send(stack, _msg("hopdown"))
    assert code == 250, reply
    _delivered_once(stack, "hopdown")



def test_a_chunking_client_with_8bit_and_smtputf8_gets_through(stack):
    """The public smtpd offers CHUNKING; what a BDAT client sends reaches the filter
    (as DATA) and the Maildir byte for byte, with 8-bit text and SMTPUTF8."""
    data = _msg("bdat") + "8-bit text: café, Grüße\r\n".encode()
    with socket.create_connection(("127.0.0.1", stack.postfix.smtpd_port), timeout=60) as sock:
        replies = sock.makefile("rb")

        def reply() -> bytes:
            lines = [replies.readline()]
            while lines[-1][3:4] == b"-":
                lines.append(replies.readline())
            return lines[-1]

        assert reply().startswith(b"220 ")
        sock.sendall(b"EHLO client.example.org\r\n")
        assert reply().startswith(b"250 ")
        sock.sendall(b"MAIL FROM:<alice@example.org> BODY=8BITMIME SMTPUTF8\r\n"
                     b"RCPT TO:<bob@example.test> NOTIFY=FAILURE\r\n"
                     + b"BDAT %d LAST\r\n" % len(data) + data)
        assert reply().startswith(b"250 2.1.0")
        assert reply().startswith(b"250 2.1.5")
        final = reply()
        assert final.startswith(b"250 2.0.0 from MTA(smtp:[127.0.0.1]:"), final
        sock.sendall(b"QUIT\r\n")
    _, body = split_delivered(_delivered_once(stack, "bdat"))
    assert body == "Hello.\n8-bit text: café, Grüße\n".encode()
    assert "Passed CLEAN" in summary_line(stack, "bdat")

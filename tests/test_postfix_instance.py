"""Integration tests of the private Postfix instance (scanner.testing.postfix).

They start real Postfix master processes under temporary directories, so they need root
and the postfix package; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import smtplib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scanner.testing.postfix import (
    PostfixInstance,
    free_port,
    make_base_dir,
    postfix_available,
)

UNAVAILABLE = postfix_available()

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or ""),
]

MESSAGE = (
    b"From: Sender <sender@example.test>\r\n"
    b"To: Bob <bob@example.test>\r\n"
    b"Subject: byte-exact body\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <body-test@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"first line with trailing spaces   \r\n"
    b".a line that starts with a dot\r\n"
    b"\r\n"
    b"tab\there, 8-bit: gr\xc3\xbc\xc3\x9fe \xe2\x82\xac\r\n"
    + b"x" * 900 + b"\r\n"
    b"last line\r\n"
)

Factory = Callable[..., PostfixInstance]


@pytest.fixture
def postfix_factory() -> Iterator[Factory]:
    """Start private instances on demand; stop and delete all of them afterwards."""
    created: list[PostfixInstance] = []

    def start(**kwargs: Any) -> PostfixInstance:
        kwargs.setdefault("smtpd_port", free_port())
        kwargs.setdefault("reinject_port", free_port())
        inst = PostfixInstance(base=make_base_dir(), **kwargs)
        created.append(inst)
        inst.start()
        return inst

    yield start
    for inst in created:
        inst.remove()


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def _as_stored(message: bytes) -> bytes:
    """How a Maildir keeps a message: LF line ends."""
    return message.replace(b"\r\n", b"\n")


def test_plain_delivery_keeps_message_bytes(postfix_factory: Factory) -> None:
    inst = postfix_factory()
    queue_id = inst.send("sender@example.test", ["bob@example.test"], MESSAGE)
    assert queue_id
    [path] = inst.wait_delivered(1, timeout=20)
    assert path.parent.parent == inst.mail_dir / "example.test" / "bob"
    stored = path.read_bytes()
    assert stored.endswith(_as_stored(MESSAGE))
    added = stored[: -len(_as_stored(MESSAGE))]
    assert b"Delivered-To: bob@example.test\n" in added
    assert inst.queue_ids() == []


def test_unknown_user_is_refused_but_send_registers(postfix_factory: Factory) -> None:
    inst = postfix_factory()
    with smtplib.SMTP("127.0.0.1", inst.smtpd_port) as smtp:
        smtp.ehlo()
        smtp.mail("sender@example.test")
        code, _ = smtp.rcpt("zelda@example.test")
    assert code == 550
    inst.send("sender@example.test", "zelda@example.test", MESSAGE)
    inst.wait_delivered(1, timeout=20, user="zelda")


def test_loop_ceiling_delivers_once(postfix_factory: Factory) -> None:
    reinject = free_port()
    inst = postfix_factory(reinject_port=reinject,
                           filter=f"scanner:[127.0.0.1]:{reinject}")
    queue_id = inst.send("sender@example.test", ["bob@example.test", "alice@example.test"],
                         MESSAGE)
    inst.wait_delivered(2, timeout=20)
    time.sleep(1.5)  # a loop would deliver again or keep the message queued
    assert len(inst.maildir_messages("bob")) == 1
    assert len(inst.maildir_messages("alice")) == 1
    assert inst.queue_ids() == []
    log = inst.log_text()
    assert f"{queue_id}: to=<bob@example.test>, relay=127.0.0.1[127.0.0.1]:{reinject}" in log
    assert f"orig_queue_id={queue_id}" in log  # XFORWARD reached the reinjection smtpd


def test_dead_filter_defers_then_delivers(postfix_factory: Factory) -> None:
    filter_port = free_port()
    inst = postfix_factory(filter=f"scanner:[127.0.0.1]:{filter_port}")
    # The port bound, never listened on: every connection is refused. Left free, the
    # port (an ephemeral one) could become the source port of Postfix's own connection
    # to it (a TCP self-connect), which then waits for a greeting for 300 s.
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", filter_port))
    try:
        queue_id = inst.send("sender@example.test", "bob@example.test", MESSAGE)

        def deferred() -> bool:
            return any(e["queue_id"] == queue_id and e["queue_name"] == "deferred"
                       for e in inst.queue())

        _wait_for(deferred, 20, f"{queue_id} in the deferred queue")
    finally:
        blocker.close()
    assert inst.maildir_messages() == []
    assert "status=bounced" not in inst.log_text()

    relay = _RelayToReinjection(inst.reinject_port)
    controller = _start_stand_in(relay, filter_port)
    try:
        inst.flush()
        [path] = inst.wait_delivered(1, timeout=30)
    finally:
        controller.stop()
    assert relay.count == 1
    assert path.read_bytes().endswith(_as_stored(MESSAGE))
    assert "status=bounced" not in inst.log_text()


def test_two_instances_side_by_side(postfix_factory: Factory) -> None:
    default_status = _default_instance_status()
    first = postfix_factory()
    second = postfix_factory()
    assert first.master_pid() != second.master_pid()
    first.send("sender@example.test", "bob@example.test", MESSAGE)
    second.send("sender@example.test", "alice@example.test", MESSAGE)
    assert len(first.wait_delivered(1, timeout=20, user="bob")) == 1
    assert len(second.wait_delivered(1, timeout=20, user="alice")) == 1
    assert first.maildir_messages("alice") == []
    assert second.maildir_messages("bob") == []

    first.stop()
    assert first.processes() == []
    second.send("sender@example.test", "carol@example.test", MESSAGE)
    second.wait_delivered(1, timeout=20, user="carol")
    second.stop()
    assert second.processes() == []
    assert _default_instance_status() == default_status


def _default_instance_status() -> int:
    """Exit status of 'postfix status' for the machine's own instance (0 = running)."""
    result = subprocess.run(["/usr/sbin/postfix", "status"], capture_output=True, check=False)
    return result.returncode


class _RelayToReinjection:
    """aiosmtpd handler standing in for the filter: pass every message to reinjection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as smtp:
            smtp.sendmail(envelope.mail_from, envelope.rcpt_tos,
                          envelope.original_content or envelope.content)
        self.count += 1
        return "250 2.0.0 Ok: relayed"


def _start_stand_in(handler: _RelayToReinjection, port: int) -> Any:
    from aiosmtpd.controller import Controller

    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller

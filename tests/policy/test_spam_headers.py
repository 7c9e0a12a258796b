"""Spam headers a message arrives with are left out for local, spam-checked recipients
(amavis's remove_existing_spam_headers), so a sender cannot forge a verdict."""

from __future__ import annotations

from scanner.actions.headers import without
from scanner.actions.tagging import spam_header_fields
from scanner.config import loads
from scanner.task import ClientInfo, Envelope, Recipient, Task
from scanner.testing.sink import Sink
from tests.helpers import handle_at_sink

FORGED = (b"From: promo@spam.example\r\nTo: bob@example.test\r\nSubject: deal\r\n"
          b"X-Spam-Flag: NO\r\n"
          b"x-spam-status: No, score=-10.0 required=5.0\r\n\ttests=[ALL_TRUSTED]\r\n"
          b"X-Spam-Score: -10\r\nX-Spam-Level: \r\nX-Spam-Checker-Version: forged 1.0\r\n"
          b"X-Spam-Other: kept\r\nMessage-ID: <f1@spam.example>\r\n\r\n"
          b"X-Spam-Flag: NO in the body stays\r\n")


def test_spam_header_fields_are_found_by_name() -> None:
    kept = without(FORGED, spam_header_fields(FORGED, "X-Spam-"))
    assert kept == (b"From: promo@spam.example\r\nTo: bob@example.test\r\nSubject: deal\r\n"
                    b"X-Spam-Other: kept\r\nMessage-ID: <f1@spam.example>\r\n\r\n"
                    b"X-Spam-Flag: NO in the body stays\r\n")
    assert spam_header_fields(FORGED, "X-Filter-") == []


def deliver(sink: Sink, config_text: str, rcpts: list[str]) -> list[bytes]:
    config = loads('[checks]\nenabled = []\n' + config_text, "t.toml")
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=FORGED,
                envelope=Envelope("promo@spam.example", tuple(Recipient(r) for r in rcpts)),
                client=ClientInfo(addr="192.0.2.7", helo="mx.spam.example"))
    before = len(sink.received)
    replies = handle_at_sink(config, [], task, sink.port)
    assert all(r.startswith("250") for r in replies), replies
    return [m.data for m in sink.wait_for(before + 1)[before:]]


def test_local_recipients_get_only_our_verdict(sink: Sink) -> None:
    text = ("[policy]\nlocal_domains = ['example.test']\nblock_senders = ['@spam.example']\n"
            "spam_destiny = 'pass'\n")
    [data] = deliver(sink, text, ["bob@example.test"])
    head = data.split(b"\r\n\r\n")[0]
    assert head.count(b"X-Spam-Flag:") == 1 and b"X-Spam-Flag: YES" in head
    assert b"score=-10" not in head and b"forged" not in head and b"X-Spam-Score: -10" not in head
    assert b"X-Spam-Other: kept" in head
    assert data.endswith(b"\r\n\r\nX-Spam-Flag: NO in the body stays\r\n")


def test_remote_recipients_and_the_switch_keep_them(sink: Sink) -> None:
    text = "[policy]\nlocal_domains = ['example.test']\n"
    remote = deliver(sink, text, ["carol@remote.test"])[0]
    assert b"X-Spam-Flag: NO\r\n" in remote and b"X-Spam-Checker-Version: forged" in remote
    off = deliver(sink, text + "remove_existing_spam_headers = false\n", ["bob@example.test"])
    assert b"X-Spam-Flag: NO\r\n" in off[0]
    local = deliver(sink, text, ["bob@example.test"])[0]  # clean, below tag_level: none of
    head = local.split(b"\r\n\r\n")[0]  # ours either, so no spam header at all
    assert b"X-Spam-" not in head.replace(b"X-Spam-Other", b"")

"""Notices to local recipients of blocked mail (policy.notify_recipient)."""

from __future__ import annotations

import email
from email.policy import default

from scanner.actions.recipient_notice import build_recipient_notice, recipients_to_notify
from scanner.config.policy import PolicyConfig
from scanner.pipeline.parse import parse_headers
from scanner.task import Destiny, Envelope, Hit, Recipient, Task, Verdict

RAW = (b"From: a@example.org\r\nTo: b@example.test\r\nSubject: your invoice\r\n"
       b"Message-ID: <n1@example.org>\r\n\r\nbody\r\n")
BANNED = Hit("BANNED_FILE", options=("x",), part="P=p004,L=1/2/1,T=exe-ms,N=invoice.pdf.exe")


def _task(verdicts: dict[str, tuple[str, Destiny, PolicyConfig]],
          sender: str = "a@example.org") -> Task:
    rcpts = tuple(Recipient(a) for a in verdicts)
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=RAW,
                envelope=Envelope(sender, rcpts), hits=[BANNED])
    task.message = parse_headers(RAW)
    for address, (category, destiny, policy) in verdicts.items():
        task.verdicts[address] = Verdict(category, destiny, 0.0, quarantine=True,
                                         policy=policy, hits=[BANNED])
    return task


def test_only_blocked_local_recipients_of_listed_categories_are_chosen() -> None:
    on = PolicyConfig(notify_recipient=("banned",), local_domains=("example.test",))
    off = PolicyConfig(local_domains=("example.test",))
    task = _task({
        "b@example.test": ("BANNED", Destiny.DISCARD, on),       # told
        "remote@example.net": ("BANNED", Destiny.DISCARD, on),   # not local
        "lover@example.test": ("BANNED", Destiny.PASS, on),      # got the mail
        "quiet@example.test": ("BANNED", Destiny.DISCARD, off),  # not asked for
        "spam@example.test": ("SPAM", Destiny.DISCARD, on),      # junk with junk
        "bounced@example.test": ("BANNED", Destiny.BOUNCE, on),  # told
    })
    assert recipients_to_notify(task, ["250 ok"] * 6) == ["b@example.test",
                                                           "bounced@example.test"]


def test_no_notice_while_the_message_is_deferred() -> None:
    on = PolicyConfig(notify_recipient=("banned",))
    task = _task({"b@example.test": ("BANNED", Destiny.DISCARD, on)})
    assert recipients_to_notify(task, ["451 4.5.0 quarantine failed"]) == []
    assert recipients_to_notify(task, ["554 5.7.0 rejected"]) == ["b@example.test"]


def test_the_notice_names_the_file_and_the_quarantine_id() -> None:
    task = _task({"b@example.test": ("BANNED", Destiny.DISCARD, PolicyConfig())})
    data, utf8 = build_recipient_notice(task, "b@example.test", "BANNED", "mx.example.test",
                                        "abcdefghijkl")
    msg = email.message_from_bytes(data, policy=default)
    assert not utf8 and data.isascii() and b"\r\n" in data
    assert msg["To"] == "b@example.test" and msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()
    assert "invoice.pdf.exe" in body and "your invoice" in body and "abcdefghijkl" in body
    assert "<a@example.org>" in body


def test_a_non_ascii_address_asks_for_smtputf8() -> None:
    task = _task({"jürgen@example.test": ("BANNED", Destiny.DISCARD, PolicyConfig())},
                 sender="zoë@example.org")
    data, utf8 = build_recipient_notice(task, "jürgen@example.test", "BANNED",
                                        "mx.example.test", None)
    assert utf8 and "jürgen@example.test".encode() in data
    assert b"(not kept)" in data


def test_a_notice_that_fails_is_logged_never_raised(caplog) -> None:
    import asyncio

    from scanner.actions.notify import send_notice

    class BrokenPool:
        @property
        def hop(self):
            raise RuntimeError("pool exploded")

    asyncio.run(send_notice(BrokenPool(), "b@example.test", b"x", "00001-01",  # type: ignore[arg-type]
                            "notice to recipient"))
    assert "notice to recipient to <b@example.test> failed: RuntimeError: pool exploded" \
        in caplog.text


def test_an_admin_notice_that_cannot_be_built_is_logged_never_raised(monkeypatch,
                                                                      caplog) -> None:
    """Notices go out after the message was dealt with: an exception there would defer,
    and so deliver again, a message already delivered (as for recipient notices)."""
    import asyncio

    from scanner.actions import notify

    def broken(*_args: object) -> bytes:
        raise ValueError("cannot write this")

    monkeypatch.setattr(notify, "build_notice", broken)
    policy = PolicyConfig(notify_admin={"banned": "postmaster@example.test"})
    task = _task({"b@example.test": ("BANNED", Destiny.DISCARD, policy)})
    asyncio.run(notify.notify_admins(task, None, "mx.example.test", None))  # type: ignore[arg-type]
    assert "admin notification to <postmaster@example.test> not built" in caplog.text


def test_the_notice_shows_the_subject_as_the_recipient_would_read_it() -> None:
    """A raw UTF-8 Subject (SMTPUTF8 mail) came out as U+FFFD and an RFC 2047 one as
    its encoded words; amavis decodes both (safe_decode_mime) in its notices."""
    on = PolicyConfig()
    for subject, shown in (("Grüße aus Köln".encode(), "Grüße aus Köln"),
                           (b"=?utf-8?q?Rechnung_f=C3=BCr?= Mai", "Rechnung für Mai")):
        task = _task({"b@example.test": ("BANNED", Destiny.DISCARD, on)})
        task.raw = RAW.replace(b"your invoice", subject)
        task.message = parse_headers(task.raw)
        data, _ = build_recipient_notice(task, "b@example.test", "BANNED", "mx.example.test",
                                         None)
        body = email.message_from_bytes(data, policy=default).get_content()
        assert f"Subject:    {shown}" in body, body

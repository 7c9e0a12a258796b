"""Helpers for the quarantine tests: sample messages, stored records, an AM.PDP client."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from scanner.mailid import new_mail_id
from scanner.quarantine.ampdp_proto import format_attr, parse_reply
from scanner.quarantine.record import QuarantineRecord
from scanner.quarantine.store import Quarantine

REPO = Path(__file__).resolve().parents[2]


def sample(subject: str = "cheap pills", body: bytes = b"buy now\r\n") -> bytes:
    return (f"From: Spammer <spam@example.org>\r\nTo: bob@example.test\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@example.org>\r\n"
            "\r\n").encode("utf-8", "surrogateescape") + body


def store(q: Quarantine, raw: bytes | None = None, *, mail_id: str | None = None,
          category: str = "SPAM", recipients: list[str] | None = None,
          sender: str = "spam@example.org", subject: str = "cheap pills",
          held_for: list[str] | None = None) -> QuarantineRecord:
    """``held_for`` None: a row as stored before it was recorded (not known)."""
    return q.store(mail_id=mail_id or new_mail_id(), raw=raw or sample(subject),
                   sender=sender, recipients=recipients or ["bob@example.test"],
                   category=category, score=9.5, symbols=["BAYES_99", "URIBL"],
                   subject=subject, message_id=f"<{subject.replace(' ', '.')}@example.org>",
                   client_addr="192.0.2.7", policy_bank="", held_for=held_for)


def ampdp(path: str | os.PathLike[str], *requests: list[tuple[str, str]],
          timeout: float = 10.0) -> list[list[tuple[str, str]]]:
    """Send requests over one connection; the decoded answer to each."""
    answers = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        reader = sock.makefile("rb")
        for request in requests:
            sock.sendall(b"".join(format_attr(k, v) for k, v in request) + b"\r\n")
            data = b""
            while True:
                line = reader.readline()
                if not line or line == b"\r\n":
                    break
                data += line
            answers.append(parse_reply(data))
    return answers


def config_text(directory: Path, reinject_port: int, socket_path: Path | None = None,
                extra: str = "") -> str:
    text = f"""
[server]
hostname = "scanner.test"

[reinject]
port = {reinject_port}
timeout = 3
connect_timeout = 2

[quarantine]
directory = "{directory}"
ampdp_socket = "{socket_path or ''}"
"""
    return text + extra


class LoopThread:
    """An asyncio loop in a background thread (to run our AM.PDP server in tests)."""

    def __init__(self) -> None:
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro, timeout: float = 10.0):  # noqa: ANN001, ANN201 - any coroutine
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

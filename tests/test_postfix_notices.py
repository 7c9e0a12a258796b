"""Site notice templates through the real Postfix and the filter process: a German
templates dir ([notices] templates_dir) gives the recipient notice, the admin notice
and the DSN of a banned message their German Subject and text, as delivered."""

from __future__ import annotations

import base64
import email
import email.policy
import io
import time
import zipfile
from email.message import EmailMessage

import pytest

from tests.postfix_stack import Stack, require_postfix
from tests.postfix_stack import summary_line as _line

pytestmark = [pytest.mark.postfix, pytest.mark.slow]

TEMPLATES = {
    "recipient-banned.txt": "Subject: Nachricht an Sie gesperrt ($category)\n\n"
                            "Eine Nachricht von <$sender> wurde nicht zugestellt.\n"
                            "Betreff:    $subject\nGefundene Datei: $banned_files\n"
                            "[?quarantine]Quarantäne-ID: $quarantine\n",
    "admin-banned.txt": "Subject: Gesperrt: $category von <$sender>\n\n"
                        "Empfänger: $recipients\nDateien:   $banned_files\n",
    "dsn.txt": "Subject: Unzustellbare Nachricht\n\nDies ist das Mailsystem auf $hostname.\n"
               "Ihre Nachricht »$subject« wurde nicht zugestellt:\n\n$failed\n",
}
POLICY = """
[policy]
local_domains = ["example.test"]
[policy.recipients."bouncer@example.test"]
banned_destiny = "bounce"
[policy.recipients."warned@example.test"]
notify_recipient = ["banned"]
notify_admin = { banned = "postmaster@example.test" }
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    require_postfix()
    directory = tmp_path_factory.mktemp("notices")
    for name, text in TEMPLATES.items():
        (directory / name).write_text(text, encoding="utf-8")
    extra = ('\n[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
             f'[notices]\ntemplates_dir = "{directory}"\n' + POLICY)
    s = Stack(extra=extra).start()
    s.postfix.add_users("bouncer", "warned", "postmaster")
    yield s
    s.remove()


def _banned(mid: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("rechnung.pdf.exe", b"MZ harmless")
    b64 = base64.encodebytes(buf.getvalue()).replace(b"\n", b"\r\n")
    return (b"From: alice@example.test\r\nTo: someone@example.test\r\n"
            b"Subject: Rechnung " + mid.encode() + b"\r\nMessage-ID: <" + mid.encode() +
            b"@example.org>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: text/plain\r\n\r\nsee zip\r\n--b\r\n"
            b"Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="docs.zip"\r\n\r\n' + b64 +
            b"--b--\r\n")


def _wait_for(stack: Stack, user: str, marker: bytes, timeout: float = 30) -> EmailMessage:
    """The first message in ``user``'s Maildir holding ``marker`` (Postfix delivers
    through its queue: the Maildir is polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in stack.postfix.maildir_messages(user):
            raw = path.read_bytes()
            if marker in raw:
                return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]
        time.sleep(0.2)
    raise AssertionError(f"nothing for {user}\n" + stack.postfix.log_tail(20))


def _text(msg: EmailMessage) -> str:
    part = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    return part.get_content().replace("\r\n", "\n")  # type: ignore[union-attr]


def test_german_recipient_and_admin_notices_arrive(stack: Stack) -> None:
    stack.postfix.send("alice@example.test", "warned@example.test", _banned("tpl1"))
    assert "{DiscardedInbound,Quarantined}" in _line(stack, "tpl1")
    notice = _wait_for(stack, "warned", b"Nachricht an Sie")
    assert notice["Subject"] == "Nachricht an Sie gesperrt (BANNED)"
    body = _text(notice)
    assert "Eine Nachricht von <alice@example.test> wurde nicht zugestellt." in body
    assert "Betreff:    Rechnung tpl1\n" in body and "rechnung.pdf.exe" in body
    assert "Quarantäne-ID: " in body
    admin = _wait_for(stack, "postmaster", b"Gesperrt")
    assert admin["Subject"] == "Gesperrt: BANNED von <alice@example.test>"
    assert "Empfänger: <warned@example.test>\n" in _text(admin)


def test_the_dsn_has_the_german_text_and_the_same_status_part(stack: Stack) -> None:
    stack.postfix.send("alice@example.test", "bouncer@example.test", _banned("tpl2"))
    assert "{BouncedInbound,Quarantined}" in _line(stack, "tpl2")
    dsn = _wait_for(stack, "alice", b"Unzustellbare")
    assert dsn["Subject"] == "Unzustellbare Nachricht"
    text = _text(dsn)
    assert ("Ihre Nachricht »Rechnung tpl2« wurde nicht zugestellt:\n\n"
            "<bouncer@example.test>: 554 5.7.0") in text, text
    report = list(dsn.iter_parts())[1]
    assert report.get_content_type() == "message/delivery-status"
    per_rcpt = report.get_payload()[1]
    assert per_rcpt["Final-Recipient"] == "rfc822; bouncer@example.test"
    assert per_rcpt["Action"] == "failed" and per_rcpt["Status"] == "5.7.0"


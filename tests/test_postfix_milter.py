"""Before queue with amavisd-milter: a real Postfix smtpd with ``smtpd_milters`` pointing
at the real ``amavisd-milter``, which sends ``request=AM.PDP`` to our AM.PDP socket.

Clean mail lands in the Maildir with our headers (and without the spam headers the
sender forged); mail the policy rejects gets 5xx at the end of DATA and lands nowhere;
with the scanner stopped Postfix answers 4xx (amavisd-milter tempfails, and
``milter_default_action = tempfail`` when the milter itself is gone): the client keeps
the message, nothing is queued or delivered. Needs root, postfix and amavisd-milter
(``scripts/quickstart.sh test`` unpacks it; skipped with the reason otherwise).
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.postfix_milter import amavisd_milter_argv, milter_main_settings
from scanner.testing.clamd import ClamdInstance, clamd_binary, eicar
from scanner.testing.filter import FilterProcess
from scanner.testing.postfix import PostfixInstance, free_port, make_base_dir, wait_for_port
from tests.helpers import filter_config
from tests.postfix_stack import BEFORE_QUEUE_POLICY, require_postfix, split_delivered

pytestmark = pytest.mark.postfix
# scripts/quickstart.sh unpacks it from Debian's package (whose amavisd-new dependency
# would start amavisd) and exports its path; an installed one is found too
AMAVISD_MILTER = os.environ.get("AMAVISD_MILTER") or shutil.which(
    "amavisd-milter", path="/usr/sbin:/usr/bin:/sbin:/bin")


class MilterStack:
    """Postfix (milter) -> amavisd-milter -> scanner's AM.PDP socket, all private."""

    def __init__(self, clamd: ClamdInstance | None = None, filter_extra: str = "",
                 postfix_extra: dict[str, str] | None = None) -> None:
        self.base = make_base_dir("scanner-milter-")
        self.milter_port = free_port()
        self.work = self.base / "milter-work"
        self.work.mkdir(mode=0o750)  # amavisd-milter refuses a world-accessible one
        self.socket = self.base / "filter" / "scanner.sock"
        # the settings 'scanner postfix-config --milter' prints (filter_config's
        # message_timeout is 20 s)
        self.postfix = PostfixInstance(
            base=self.base / "postfix", smtpd_port=free_port(), reinject_port=free_port(),
            extra_main={**milter_main_settings(f"inet:127.0.0.1:{self.milter_port}", 20),
                        **(postfix_extra or {})})
        listen = free_port()
        policy = f"""
[quarantine]
directory = "{self.base / 'filter' / 'quarantine'}"
ampdp_socket = "{self.socket}"
""" + BEFORE_QUEUE_POLICY
        if clamd is not None:  # the real clamav check (virus_destiny: discard)
            policy += ('\n[checks]\ndisabled = ["auth", "dnsbl", "uribl", "bayes"]\n'
                       f'[checks.settings.clamav]\nendpoints = ["{clamd.unix_endpoint}"]\n'
                       'timeout = 5\nconnect_timeout = 2\n')
        policy += filter_extra
        self.filter = FilterProcess(self.base / "filter", filter_config(
            listen, self.postfix.reinject_port, log_file=self.base / "filter" / "scanner.log",
            extra=policy), [listen])
        self.milter: subprocess.Popen | None = None

    def start(self) -> MilterStack:
        self.postfix.start()
        self.start_filter()
        argv = amavisd_milter_argv(str(self.socket), 20, 20,
                                   listen=f"inet:{self.milter_port}@127.0.0.1",
                                   workdir=str(self.work), program=str(AMAVISD_MILTER))
        with open(self.base / "milter.log", "ab") as log:
            self.milter = subprocess.Popen(
                [*argv, "-f", "-p", str(self.base / "milter.pid")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.milter_port, 15)
        return self

    def start_filter(self) -> None:
        self.filter.start()
        deadline = time.monotonic() + 15
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("no AM.PDP socket:\n" + self.filter.stderr_text())
            time.sleep(0.05)

    def stop_milter(self) -> None:
        if self.milter is not None and self.milter.poll() is None:
            os.killpg(self.milter.pid, signal.SIGTERM)
            try:
                self.milter.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.milter.pid, signal.SIGKILL)
                self.milter.wait(10)
        self.milter = None

    def remove(self) -> None:
        self.stop_milter()
        self.filter.stop()
        self.postfix.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def logs(self) -> str:
        milter = (self.base / "milter.log").read_text("utf-8", "replace")
        return (f"--- postfix ---\n{self.postfix.log_tail(30)}\n--- amavisd-milter ---\n"
                f"{milter[-3000:]}\n--- scanner ---\n" + "\n".join(self.filter.log_lines()[-20:]))


@pytest.fixture(scope="module")
def stack() -> Iterator[MilterStack]:
    require_postfix()
    if AMAVISD_MILTER is None:
        pytest.skip("amavisd-milter not found (scripts/quickstart.sh test unpacks it into "
                    ".cache/amavisd-milter; or apt-get install amavisd-milter)")
    if clamd_binary() is None:
        pytest.skip("clamd not installed (apt-get install clamav-daemon)")
    clamd = ClamdInstance(make_base_dir("scanner-clamd-"))
    clamd.start()
    s = MilterStack(clamd).start()
    yield s
    s.remove()
    clamd.close()


def _msg(mid: str, sender: str = "alice@example.org", extra: bytes = b"") -> bytes:
    return (f"From: <{sender}>\r\nTo: bob@example.test\r\nSubject: milter {mid}\r\n"
            f"Message-ID: <{mid}@example.org>\r\n").encode() + extra + b"\r\nHello.\r\n"


def _send(stack: MilterStack, sender: str, data: bytes) -> tuple[int, bytes]:
    """Send through Postfix's smtpd; the reply to the end of DATA, or the first
    command refused before it."""
    with smtplib.SMTP("127.0.0.1", stack.postfix.smtpd_port, timeout=120) as smtp:
        smtp.ehlo("client.example.org")
        for reply in (smtp.mail(sender), smtp.rcpt("bob@example.test")):
            if reply[0] != 250:
                return reply
        return smtp.data(data)


def _delivered(stack: MilterStack, mid: str) -> list[Path]:
    return [p for p in stack.postfix.maildir_messages("bob")
            if f"<{mid}@example.org>".encode() in p.read_bytes()]


def _settled(stack: MilterStack, mid: str, seconds: float = 3.0) -> None:
    """Give Postfix time to deliver what it might have queued, then check it did not."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stack.postfix.flush()
        assert not _delivered(stack, mid), stack.logs()
        time.sleep(0.5)
    assert stack.postfix.queue() == [], stack.logs()


def test_clean_mail_is_delivered_with_our_headers(stack: MilterStack):
    code, reply = _send(stack, "alice@example.org",
                        _msg("clean", extra=b"X-Spam-Flag: YES\r\nX-Spam-Score: 99\r\n"))
    assert code == 250, (reply, stack.logs())
    deadline = time.monotonic() + 30
    while not _delivered(stack, "clean"):
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.1)
    [path] = _delivered(stack, "clean")
    head, body = split_delivered(path.read_bytes())
    assert body == b"Hello.\n"
    assert b"\nX-Spam-Flag: NO\n" in head and b"X-Spam-Status: No, score=" in head
    assert b"X-Spam-Flag: YES" not in head and b"X-Spam-Score: 99" not in head  # forged
    assert head.count(b"X-Spam-Flag:") == 1
    assert b"\nX-Virus-Scanned: scanner at scanner.test\n" in head  # clamd scanned it
    lines = [ln for ln in stack.filter.summary_lines() if "<clean@example.org>" in ln]
    assert len(lines) == 1 and "Passed CLEAN {AcceptedInbound}" in lines[0], stack.logs()
    # -B sends Postfix's {daemon_name} (myhostname) as a bank: unknown, left out
    assert "mx.postfix.test" not in lines[0]
    # the Queue-ID is Postfix's own: the milter sent it
    qid = lines[0].split("Queue-ID: ")[1].split(",")[0]
    assert qid and f"{qid}: " in stack.postfix.log_text()


def test_rejected_mail_gets_5xx_at_end_of_data(stack: MilterStack):
    code, reply = _send(stack, "promo@spam.example", _msg("rejected", "promo@spam.example"))
    assert code == 554 and reply.startswith(b"5.7.0 Reject, id="), (code, reply)
    _settled(stack, "rejected")
    lines = [ln for ln in stack.filter.summary_lines() if "<rejected@example.org>" in ln]
    assert len(lines) == 1 and "Blocked SPAM {RejectedInbound" in lines[0], stack.logs()


def test_blocked_recipients_are_removed_the_others_get_it(stack: MilterStack):
    """Spam for a lover (passes) and for a recipient who discards it: delrcpt."""
    with smtplib.SMTP("127.0.0.1", stack.postfix.smtpd_port, timeout=120) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.mail("promo@spam.example")[0] == 250
        for rcpt in ("carol@example.test", "dave@example.test"):
            assert smtp.rcpt(rcpt)[0] == 250
        code, reply = smtp.data(_msg("mixed", "promo@spam.example"))
    assert code == 250, (code, reply)
    deadline = time.monotonic() + 30
    while not [p for p in stack.postfix.maildir_messages("carol")]:
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.1)
    [path] = stack.postfix.maildir_messages("carol")
    assert b"\nX-Spam-Flag: YES\n" in split_delivered(path.read_bytes())[0]
    time.sleep(1)
    stack.postfix.flush()
    assert stack.postfix.maildir_messages("dave") == [], stack.logs()
    assert stack.postfix.queue() == []
    lines = [ln for ln in stack.filter.summary_lines() if "<mixed@example.org>" in ln]
    # amavis's two lines: Passed for the recipient the MTA keeps, Blocked for the other
    assert len(lines) == 2, lines
    assert "Passed SPAM {AcceptedInbound,DiscardedInbound" in lines[0], lines
    assert "> -> <carol@example.test>, " in lines[0], lines
    assert "Blocked SPAM {AcceptedInbound,DiscardedInbound" in lines[1], lines
    assert "> -> <dave@example.test>, " in lines[1], lines


def test_virus_is_discarded_and_quarantined(stack: MilterStack):
    """clamd finds EICAR; virus_destiny discard: Postfix says 250, delivers nothing."""
    data = _msg("virus", extra=b"Content-Type: text/plain\r\n").replace(
        b"Hello.\r\n", eicar() + b"\r\n")
    code, reply = _send(stack, "alice@example.org", data)
    assert code == 250, (code, reply)
    _settled(stack, "virus")
    assert "milter-discard" in stack.postfix.log_text()
    lines = [ln for ln in stack.filter.summary_lines() if "<virus@example.org>" in ln]
    assert len(lines) == 1, stack.logs()
    assert "Blocked INFECTED (" in lines[0] and "{DiscardedInbound,Quarantined}" in lines[0]
    mail_id = lines[0].split("mail_id: ")[1].split(",")[0]
    [kept] = (stack.base / "filter" / "quarantine").rglob(f"virus-{mail_id}.gz")
    assert eicar() in gzip.decompress(kept.read_bytes())


def test_forged_spam_headers_in_any_case_are_removed(stack: MilterStack):
    """Postfix counts a delheader index over the fields of that name in any case: two
    forged flags spelt differently both go (amavisd-milter applies our delheader as
    given; before, the second index pointed past the fields left)."""
    forged = b"X-Spam-Flag: YES\r\nx-spam-flag: YES\r\nX-SPAM-Status: Yes, forged\r\n"
    code, reply = _send(stack, "alice@example.org", _msg("anycase", extra=forged))
    assert code == 250, (reply, stack.logs())
    deadline = time.monotonic() + 30
    while not _delivered(stack, "anycase"):
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.1)
    [path] = _delivered(stack, "anycase")
    head = split_delivered(path.read_bytes())[0].lower()
    assert head.count(b"x-spam-flag:") == 1 and b"\nx-spam-flag: no\n" in head, head
    assert head.count(b"x-spam-status:") == 1 and b"forged" not in head, head


def test_scanner_down_is_4xx_and_nothing_is_lost(stack: MilterStack):
    stack.filter.stop()
    try:
        code, reply = _send(stack, "alice@example.org", _msg("down"))
        assert 400 <= code < 500, (code, reply)  # amavisd-milter: 451 4.6.0
        _settled(stack, "down")
        stack.stop_milter()  # the milter gone too: Postfix's milter_default_action
        code, reply = _send(stack, "alice@example.org", _msg("nomilter"))
        assert 400 <= code < 500, (code, reply)  # Postfix: 451 4.7.1 at MAIL FROM
        _settled(stack, "nomilter")
    finally:
        stack.start_filter()
    assert not list(stack.work.iterdir())  # amavisd-milter removed its work files


"""ClamAV through the real Postfix path: detection, X-Virus-Scanned, and a clamd that
dies during a burst (every message deferred, then delivered once, none unscanned)."""

from __future__ import annotations

import base64
import concurrent.futures
import shutil
import time
from pathlib import Path

import pytest

from scanner.testing.clamd import ClamdInstance, clamd_binary, eicar
from scanner.testing.postfix import make_base_dir
from tests.clamav_helpers import clamscan_argv
from tests.postfix_stack import (
    Stack,
    delivered_ids,
    require_postfix,
    split_delivered,
    summary_line,
    wait_ids,
)

pytestmark = [pytest.mark.postfix]


@pytest.fixture
def clamd():
    if clamd_binary() is None:
        pytest.skip("clamd not installed (apt-get install clamav-daemon)")
    base = make_base_dir("scanner-clamd-")
    inst = ClamdInstance(base)
    inst.start()
    yield inst
    inst.close()


def _clam_extra(clamd: ClamdInstance) -> str:
    return ('\n[checks]\ndisabled = ["auth", "dnsbl", "uribl", "bayes"]\n'
            f'[checks.settings.clamav]\nendpoints = ["{clamd.unix_endpoint}"]\n'
            'timeout = 5\nconnect_timeout = 2\n')


def _msg(mid: str) -> bytes:
    return (b"From: a@example.org\r\nTo: bob@example.test\r\nSubject: av\r\n"
            b"Message-ID: <" + mid.encode() + b"@example.org>\r\n\r\nclean body\r\n")


def test_clean_mail_gets_x_virus_scanned(clamd: ClamdInstance):
    require_postfix()
    stack = Stack(extra=_clam_extra(clamd)).start()
    try:
        stack.postfix.send("a@example.org", "bob@example.test", _msg("scanned1"))
        wait_ids(stack, {"<scanned1@example.org>"}, 30)
        raw = stack.postfix.maildir_messages("bob")[0].read_bytes()
        head, _ = split_delivered(raw)
        assert b"X-Virus-Scanned: scanner at scanner.test" in head
    finally:
        stack.remove()


@pytest.mark.slow
def test_clamd_killed_during_a_burst_defers_then_delivers(clamd: ClamdInstance):
    require_postfix()
    stack = Stack(extra=_clam_extra(clamd)).start()
    try:
        mids = [f"burst-{i}" for i in range(30)]

        def send(mid: str) -> str:
            stack.postfix.send("a@example.org", "bob@example.test", _msg(mid))
            return f"<{mid}@example.org>"

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            # The first third is under way, and clamd demonstrably scanning (some of it
            # delivered), when clamd dies; the rest of the burst follows the kill. (A
            # fixed sleep before the kill raced the filter: a fast one had finished the
            # whole burst.)
            futures = [pool.submit(send, m) for m in mids[:10]]
            deadline = time.monotonic() + 60
            while not delivered_ids(stack) and time.monotonic() < deadline:
                time.sleep(0.02)
            clamd.kill()
            futures += [pool.submit(send, m) for m in mids[10:]]
            wanted = {f.result(60) for f in futures}
        # Each message tries the dead clamd again after 1 s and 6 s (retry_delays, as
        # amavis) before its 451 CLAMAV_FAIL: wait for the first deferral in the log.
        deadline = time.monotonic() + 60
        while ("CLAMAV_FAIL" not in stack.postfix.log_text()
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert "CLAMAV_FAIL" in stack.postfix.log_text()
        early = delivered_ids(stack)
        deferred = stack.postfix.queue()
        assert deferred, "with clamd dead, messages must wait in Postfix's queue"
        # whatever was delivered before the kill was scanned: it carries the header
        for path in stack.postfix.maildir_messages("bob"):
            assert b"X-Virus-Scanned:" in split_delivered(path.read_bytes())[0]
        clamd.start()
        stack.postfix.flush()
        ids = wait_ids(stack, wanted, 120)
        assert all(ids[m] == 1 for m in wanted), "duplicates"
        assert len(early) < len(wanted)
        for path in stack.postfix.maildir_messages("bob"):
            assert b"X-Virus-Scanned:" in split_delivered(path.read_bytes())[0]
        lines = stack.filter.summary_lines()
        assert sum("Passed CLEAN {RelayedInbound}" in ln for ln in lines) == len(wanted)
    finally:
        stack.remove()


@pytest.mark.slow
def test_clamd_restarted_while_a_message_waits_costs_a_delay_not_a_deferral(
        clamd: ClamdInstance):
    """clamd is down when a message arrives (a restart by logrotate or freshclam) and
    back a moment later: the filter tries it again (retry_delays, as amavis does) and
    the message is delivered, scanned, without a 451 and a trip through the queue."""
    require_postfix()
    stack = Stack(extra=_clam_extra(clamd)).start()
    try:
        clamd.stop()  # the socket file is gone: cannot connect
        stack.postfix.send("a@example.org", "bob@example.test", _msg("restart1"))
        deadline = time.monotonic() + 60
        while not any("cannot connect" in ln for ln in stack.filter.log_lines()):
            assert time.monotonic() < deadline, stack.filter.log_lines()[-10:]
            time.sleep(0.05)
        clamd.start()
        wait_ids(stack, {"<restart1@example.org>"}, 60)
        assert "CLAMAV_FAIL" not in stack.postfix.log_text()
        assert "Passed CLEAN {RelayedInbound}" in summary_line(stack, "restart1")
        raw = stack.postfix.maildir_messages("bob")[0].read_bytes()
        assert b"X-Virus-Scanned:" in split_delivered(raw)[0]
    finally:
        stack.remove()


def test_clamd_stopped_the_backup_clamscan_scans_through_postfix(clamd: ClamdInstance):
    """With clamd stopped and backup_command set to amavis's ClamAV-clamscan entry, mail
    keeps flowing: the EICAR mail is blocked as INFECTED and the clean one delivered,
    neither deferred (no 451 CLAMAV_FAIL); the filter's log says the backup scanned."""
    require_postfix()
    if shutil.which("clamscan") is None:
        pytest.skip("clamscan not installed (apt-get install clamav)")
    argv = ", ".join(f'"{a}"' for a in clamscan_argv(clamd.db_dir))
    stack = Stack(extra=_clam_extra(clamd) + f"backup_command = [{argv}]\n").start()
    try:
        clamd.stop()
        stack.postfix.send("a@example.org", "bob@example.test", _msg("backup-clean"))
        stack.postfix.send("a@example.org", "bob@example.test",
                           _attach("backup-virus", "eicar.com", eicar()))
        wait_ids(stack, {"<backup-clean@example.org>"}, 60)
        assert "Passed CLEAN {RelayedInbound}" in summary_line(stack, "backup-clean")
        line = summary_line(stack, "backup-virus", 60)
        assert "Blocked INFECTED (Eicar-Test-Signature.UNOFFICIAL)" in line
        assert "CLAMAV_FAIL" not in stack.postfix.log_text()
        assert len(stack.postfix.maildir_messages("bob")) == 1
        log = "\n".join(stack.filter.log_lines())
        assert "Eicar-Test-Signature.UNOFFICIAL in message (backup clamscan)" in log
    finally:
        stack.remove()


TESTFILES = Path("/usr/share/clamav-testfiles")


@pytest.mark.slow
def test_every_clamav_testfile_is_blocked_through_postfix():
    """Each of Debian's clamav-testfiles, attached to its own mail, is blocked as INFECTED,
    discarded and quarantined; nothing reaches the Maildir. clamd runs with the settings
    the README recommends (MaxRecursion 20, AlertExceedsMax yes)."""
    require_postfix()
    if clamd_binary() is None:
        pytest.skip("clamd not installed (apt-get install clamav-daemon)")
    files = sorted(p for p in TESTFILES.glob("*") if p.is_file()) if TESTFILES.is_dir() else []
    if not files:
        pytest.skip("clamav-testfiles not installed (apt-get install clamav-testfiles)")
    inst = ClamdInstance(make_base_dir("scanner-clamd-"),
                         extra={"MaxRecursion": "20", "AlertExceedsMax": "yes"})
    inst.start()
    stack = Stack(extra=_clam_extra(inst)).start()
    try:
        mids = {}
        for i, path in enumerate(files):
            mid = f"virus-{i}"
            mids[path.name] = f"<{mid}@example.org>"
            stack.postfix.send("a@example.org", "bob@example.test",
                               _attach(mid, path.name, path.read_bytes()))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(_logged(stack, mids)) < len(mids):
            time.sleep(0.5)
        lines = _logged(stack, mids)
        missing = sorted(n for n, m in mids.items() if m not in lines)
        assert not missing, f"not logged: {missing}"
        not_blocked = sorted(n for n, m in mids.items()
                             if "Blocked INFECTED (" not in lines[m]
                             or "{DiscardedInbound,Quarantined}" not in lines[m])
        assert not_blocked == [], f"not blocked as INFECTED: {not_blocked}"
        assert stack.postfix.maildir_messages() == []
        quarantined = list((stack.base / "filter" / "quarantine").glob("*/virus-*.gz"))
        assert len(quarantined) == len(files)
    finally:
        stack.remove()
        inst.close()


def _attach(mid: str, name: str, payload: bytes) -> bytes:
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (b"From: a@example.org\r\nTo: bob@example.test\r\nSubject: sample\r\n"
            b"Message-ID: <" + mid.encode() + b"@example.org>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            b"Content-Type: text/plain\r\n\r\nsee attachment\r\n--b\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="' + name.encode() + b'"\r\n\r\n'
            + b64 + b"--b--\r\n")


def _logged(stack: Stack, mids: dict[str, str]) -> dict[str, str]:
    wanted = set(mids.values())
    out = {}
    for line in stack.filter.summary_lines():
        mid = line.split("Message-ID: ")[1].split(",")[0] if "Message-ID: " in line else ""
        if mid in wanted:
            out[mid] = line
    return out


def test_clamd_phishing_heuristic_passes_as_spam_points_through_postfix():
    """clamd's phishing heuristic (here with a one-line phishing database; Debian's
    clamd.conf has PhishingScanURLs on) names a newsletter whose link shows another host
    than it leads to: amavis scores that 0.1 spam points (@virus_name_to_spam_score_maps)
    and delivers it; it used to be discarded as INFECTED. A virus still is blocked."""
    require_postfix()
    if clamd_binary() is None:
        pytest.skip("clamd not installed (apt-get install clamav-daemon)")
    inst = ClamdInstance(make_base_dir("scanner-clamd-"))
    inst.prepare()
    (inst.db_dir / "phish.pdb").write_text("H:paypal.com\n", "ascii")
    inst.start()
    extra = _clam_extra(inst).replace('"bayes"]', '"bayes", "rules"]')  # ClamAV's score alone
    stack = Stack(extra=extra).start()
    try:
        news = (b"From: news@example.org\r\nTo: bob@example.test\r\nSubject: news\r\n"
                b"Message-ID: <news-1@example.org>\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: text/html\r\n\r\n<p>Pay with <a href=\"https://pay.example."
                b"org/\">https://www.paypal.com/checkout</a></p>\r\n")
        stack.postfix.send("news@example.org", "bob@example.test", news)
        stack.postfix.send("a@example.org", "bob@example.test", _attach(
            "virus-1", "eicar.com", eicar()))
        wait_ids(stack, {"<news-1@example.org>"}, 60)
        mids = {"news": "<news-1@example.org>", "virus": "<virus-1@example.org>"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_logged(stack, mids)) < len(mids):
            time.sleep(0.5)
        lines = _logged(stack, mids)
        assert "Passed CLEAN {RelayedInbound}" in lines[mids["news"]]
        assert "Hits: 0.100," in lines[mids["news"]]
        assert "Blocked INFECTED (Eicar-Test-Signature.UNOFFICIAL)" in lines[mids["virus"]]
        assert len(stack.postfix.maildir_messages("bob")) == 1
    finally:
        stack.remove()
        inst.close()

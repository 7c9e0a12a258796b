"""ClamAV through the real Postfix path: detection, X-Virus-Scanned, and a clamd that
dies during a burst (every message deferred, then delivered once, none unscanned)."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from scanner.testing.clamd import ClamdInstance, clamd_binary
from scanner.testing.postfix import make_base_dir
from tests.postfix_stack import Stack, delivered_ids, require_postfix, split_delivered, wait_ids

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
    return (f'\n[checks]\ndisabled = []\n[checks.settings.clamav]\n'
            f'endpoints = ["{clamd.unix_endpoint}"]\ntimeout = 5\nconnect_timeout = 2\n')


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
            futures = [pool.submit(send, m) for m in mids]
            time.sleep(0.3)
            clamd.kill()
            wanted = {f.result(60) for f in futures}
        time.sleep(3)
        early = delivered_ids(stack)
        deferred = stack.postfix.queue()
        assert deferred, "with clamd dead, messages must wait in Postfix's queue"
        assert "CLAMAV_FAIL" in stack.postfix.log_text()
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

"""Notice templates are read at start and again on SIGHUP (real filter process, test
sink): a worker started later (after a crash, the watchdog, max_requests) writes the
texts the others write, even when a template was edited or broken since; SIGHUP applies
an edit in the running workers and in those started later."""

from __future__ import annotations

import email
import os
import signal
from email.policy import default
from pathlib import Path

from scanner.testing.sink import Sink
from tests.helpers import smtp, start_filter
from tests.test_bayes_check import _wait_for
from tests.test_failures import _wait_children
from tests.test_lifecycle import _replace_worker

POLICY = """
[policy]
local_domains = ["example.test"]
notify_admin = { banned = "postmaster@example.test" }
"""
BANNED = (b"From: alice@example.org\r\nTo: b@example.test\r\nSubject: Rechnung\r\n"
          b"Message-ID: <tplw@example.org>\r\nMIME-Version: 1.0\r\n"
          b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
          b"Content-Type: text/plain\r\n\r\nsiehe Anhang\r\n--b\r\n"
          b"Content-Type: application/octet-stream\r\n"
          b'Content-Disposition: attachment; filename="rechnung.pdf.exe"\r\n\r\n'
          b"MZ harmless\r\n--b--\r\n")


def test_a_worker_started_later_uses_the_templates_read_at_start(tmp_path: Path,
                                                                   sink: Sink) -> None:
    templates = tmp_path / "notices"
    templates.mkdir()
    admin = templates / "admin-banned.txt"
    admin.write_text("Subject: Gesperrt: $banned_files\n\nÜberprüfen Sie $mail_id.\n",
                     encoding="utf-8")
    extra = ('[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
             f'[notices]\ntemplates_dir = "{templates}"\n' + POLICY)
    proc, port = start_filter(tmp_path / "filter", sink.port, extra=extra, workers=1)
    try:
        [worker] = _wait_children(proc.proc.pid, 1)
        admin.write_text("Subject: $kaputt\n\n", encoding="utf-8")  # broken since start
        _replace_worker(proc.proc.pid, worker)
        s = smtp(port)  # the new worker greets (it did not stop on the template)
        assert s.sendmail("alice@example.org", ["b@example.test"], BANNED) == {}
        s.quit()
        [notice] = sink.wait_for(1, timeout=30)
    finally:
        proc.stop()
    assert notice.recipients == ["postmaster@example.test"]
    msg = email.message_from_bytes(notice.data, policy=default)
    assert msg["Subject"] == "Gesperrt: rechnung.pdf.exe"
    assert msg.get_content().startswith("Überprüfen Sie ")  # type: ignore[attr-defined]
    assert not any("worker crashed" in line for line in proc.log_lines())


def _notice_subject(port: int, sink: Sink, count: int) -> str:
    """Send the banned message; the Subject of the admin notice it brings (the
    ``count``-th message at the sink)."""
    s = smtp(port)
    assert s.sendmail("alice@example.org", ["b@example.test"], BANNED) == {}
    s.quit()
    notice = sink.wait_for(count, timeout=30)[-1]
    assert notice.recipients == ["postmaster@example.test"]
    return str(email.message_from_bytes(notice.data, policy=default)["Subject"])


def test_sighup_applies_an_edited_template_without_a_restart(tmp_path: Path,
                                                             sink: Sink) -> None:
    """An edit then SIGHUP: the running worker writes the new text, and so does one
    started after it; a broken edit then SIGHUP keeps the text (logged with its file
    and line)."""
    templates = tmp_path / "notices"
    templates.mkdir()
    admin = templates / "admin-banned.txt"
    admin.write_text("Subject: Alt: $banned_files\n\n$mail_id\n", encoding="utf-8")
    extra = ('[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
             f'[notices]\ntemplates_dir = "{templates}"\n' + POLICY)
    proc, port = start_filter(tmp_path / "filter", sink.port, extra=extra, workers=1)

    def sighup(times: int) -> None:
        os.kill(proc.proc.pid, signal.SIGHUP)
        def done() -> bool:
            log = "\n".join(proc.log_lines())
            return log.count("SIGHUP: ") >= times and log.count("notice templates") >= times

        _wait_for("the master's and the worker's reload", done)

    try:
        [worker] = _wait_children(proc.proc.pid, 1)
        assert _notice_subject(port, sink, 1) == "Alt: rechnung.pdf.exe"
        admin.write_text("Subject: Neu: $banned_files\n\n$mail_id\n", encoding="utf-8")
        sighup(1)
        assert _notice_subject(port, sink, 2) == "Neu: rechnung.pdf.exe"
        _replace_worker(proc.proc.pid, worker)
        assert _notice_subject(port, sink, 3) == "Neu: rechnung.pdf.exe"
        admin.write_text("Subject: $kaputt\n\n", encoding="utf-8")
        sighup(2)
        assert _notice_subject(port, sink, 4) == "Neu: rechnung.pdf.exe"
    finally:
        proc.stop()
    log = "\n".join(proc.log_lines())
    assert f"keeping the current notice templates: {admin}: line 1: unknown variable " \
        "$kaputt" in log

"""The unpack stage inside the running filter: parts reach the checks, banned files and
decoding limits change the outcome."""

from __future__ import annotations

import base64
import io
import time
import zipfile
from pathlib import Path

from scanner.testing.sink import Sink
from tests.helpers import smtp, start_filter


def _with_attachment(name: str, payload: bytes, mid: str) -> bytes:
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (b"From: a@example.org\r\nTo: b@example.test\r\nSubject: attachment\r\n"
            b"Message-ID: <" + mid.encode() + b"@example.org>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            b"--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            b"--b1\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="' + name.encode() + b'"\r\n\r\n'
            + b64 + b"--b1--\r\n")


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in entries.items():
            z.writestr(n, data)
    return buf.getvalue()


def test_banned_name_inside_zip_is_discarded(tmp_path: Path, sink: Sink):
    extra = ('\n[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
             '[policy]\nquarantine = []\n')
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    try:
        s = smtp(port)
        banned = _with_attachment("docs.zip", _zip({"invoice.pdf.exe": b"MZ fake"}), "ban1")
        clean = _with_attachment("docs.zip", _zip({"notes.txt": b"just text\n"}), "ok1")
        code, text = _send(s, banned)
        assert code == 250 and b"discarded" in text
        code, text = _send(s, clean)
        assert code == 250 and b"from MTA" in text
        s.quit()
    finally:
        proc.stop()
    got = sink.wait_for(1)
    assert len(got) == 1 and b"ok1@example.org" in got[0].data
    lines = proc.summary_lines()
    blocked = [ln for ln in lines if "ban1@" in ln][0]
    assert "Blocked BANNED (P=p004,L=1/2/1," in blocked and "N=invoice.pdf.exe)" in blocked
    assert "{DiscardedInbound}" in blocked


def test_zip_bomb_is_unchecked_not_clean(tmp_path: Path, sink: Sink):
    extra = '\n[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    bomb = _zip({"zeros.bin": b"\0" * (60 * 1024 * 1024)})
    try:
        s = smtp(port)
        code, _ = _send(s, _with_attachment("bomb.zip", bomb, "bomb1"))
        assert code == 250
        s.quit()
    finally:
        proc.stop()
    line = [ln for ln in proc.summary_lines() if "bomb1@" in ln][0]
    assert "Passed UNCHECKED" in line


def _send(s, raw: bytes) -> tuple[int, bytes]:
    s.mail("a@example.org")
    s.rcpt("b@example.test")
    return s.data(raw)


def test_banned_mail_is_quarantined_before_the_reply(tmp_path: Path, sink: Sink):
    extra = '\n[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    try:
        s = smtp(port)
        code, text = _send(s, _with_attachment("docs.zip", _zip({"a.scr": b"MZ"}), "ban3"))
        s.quit()
    finally:
        proc.stop()
    assert code == 250 and b"discarded" in text
    line = [ln for ln in proc.summary_lines() if "ban3@" in ln][0]
    assert "{DiscardedInbound,Quarantined}" in line
    mail_id = line.split("mail_id: ")[1].split(",")[0]
    stored = tmp_path / "quarantine" / mail_id[0] / f"banned-{mail_id}.gz"
    assert f"quarantine: {mail_id[0]}/banned-{mail_id}.gz," in line
    import gzip
    assert b"ban3@example.org" in gzip.decompress(stored.read_bytes())
    assert sink.received == []


def test_blocked_mail_is_deferred_when_it_cannot_be_quarantined(tmp_path: Path, sink: Sink):
    extra = '\n[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    qdir = tmp_path / "quarantine"  # break the quarantine while the filter runs
    import shutil
    try:
        # the listening sockets accept before the master has made the directory
        deadline = time.monotonic() + 20
        while not qdir.is_dir() and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(qdir)
        qdir.write_text("not a directory")
        s = smtp(port)
        banned = _with_attachment("docs.zip", _zip({"run.exe": b"MZ fake"}), "ban2")
        code, text = _send(s, banned)
        s.quit()
    finally:
        proc.stop()
    assert code == 451 and b"quarantine failed" in text
    assert sink.received == []


def test_admin_is_notified_of_banned_mail(tmp_path: Path, sink: Sink):
    extra = ('\n[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
             '[policy]\nnotify_admin = { banned = "postmaster@example.test" }\n')
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    try:
        s = smtp(port)
        code, _ = _send(s, _with_attachment("docs.zip", _zip({"x.pif": b"MZ"}), "ban4"))
        s.quit()
    finally:
        proc.stop()
    assert code == 250
    got = sink.wait_for(1)
    assert len(got) == 1 and got[0].recipients == ["postmaster@example.test"]
    assert got[0].sender == "<>"
    notice = got[0].data
    assert b"Subject: BANNED from <a@example.org>" in notice
    assert b"Message-ID: <ban4@example.org>" in notice and b"Quarantine: " in notice


def test_local_recipient_is_told_of_banned_mail(tmp_path: Path, sink: Sink):
    extra = ('\n[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
             '[policy]\nnotify_recipient = ["banned"]\nlocal_domains = ["example.test"]\n')
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    try:
        s = smtp(port)
        s.mail("a@example.org")
        s.rcpt("b@example.test")
        s.rcpt("far@example.net")  # not local: no notice, as amavis's $warn_offsite
        code, _ = s.data(_with_attachment("docs.zip", _zip({"x.pif": b"MZ"}), "ban5"))
        s.quit()
    finally:
        proc.stop()
    assert code == 250
    got = sink.wait_for(1)
    assert [(m.sender, m.recipients) for m in got] == [("<>", ["b@example.test"])]
    notice = got[0].data
    mail_id = [ln for ln in proc.summary_lines() if "ban5@" in ln][0].split("mail_id: ")[1][:12]
    assert b"Subject: A message to you was blocked (BANNED)" in notice
    assert b"Found:      file: x.pif" in notice and mail_id.encode() in notice
    assert b"Subject:    attachment" in notice  # the blocked message's own Subject


def test_ambiguous_mime_boundary_is_unchecked_and_tagged(tmp_path: Path, sink: Sink):
    # CVE-2024-28054: two boundary parameters, two possible part lists
    extra = '\n[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
    proc, port = start_filter(tmp_path, sink.port, extra=extra)
    raw = (b"From: a@example.org\r\nTo: b@example.test\r\nSubject: two readings\r\n"
           b"Message-ID: <amb1@example.org>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="a"; boundary="b"\r\n\r\n'
           b"--a\r\nContent-Type: text/plain\r\n\r\nharmless\r\n"
           b"--b\r\nContent-Type: application/octet-stream\r\n\r\nMZ payload\r\n--b--\r\n"
           b"--a--\r\n")
    try:
        s = smtp(port)
        code, _ = _send(s, raw)
        s.quit()
    finally:
        proc.stop()
    assert code == 250
    line = [ln for ln in proc.summary_lines() if "amb1@" in ln][0]
    assert "Passed UNCHECKED {RelayedTaggedInbound}" in line  # ***UNCHECKED*** tag
    got = sink.wait_for(1)
    assert b"Subject: ***UNCHECKED*** two readings" in got[0].data
    assert got[0].data.endswith(raw.split(b"\r\n\r\n", 1)[1])  # body untouched

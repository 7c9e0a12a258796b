"""A full disk under a running filter: the log file and the decoder's spool on a small
tmpfs (so the tests need root, as tests/quarantine/test_atomicity.py does). Mail must
neither be answered 5xx after the next hop took it nor pass unscanned."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scanner.testing.filter import FilterProcess
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from tests.helpers import filter_config, message, smtp
from tests.test_spine import smtplib_error


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """mount(options) -> a fresh tmpfs directory; unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        where = tmp_path / f"small{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _filter(tmp_path: Path, sink: Sink, log_file: Path, extra: str = "",
            server_extra: str = "") -> tuple[FilterProcess, int]:
    port = free_port()
    text = filter_config(port, sink.port, log_file=log_file, extra=extra,
                         server_extra=server_extra)
    text = text.replace(f'directory = "{log_file.parent / "quarantine"}"',
                        f'directory = "{tmp_path / "quarantine"}"')
    proc = FilterProcess(tmp_path / "filter", text, [port])
    proc.start()
    return proc, port


def test_a_log_file_that_cannot_be_reopened_fails_no_message(tmp_path: Path, sink: Sink,
                                                             small_fs):
    """logrotate moved the log away and the new one cannot be created (no inode left):
    Python's WatchedFileHandler raised from every log call, so a message the next hop
    had taken was answered 500 (Postfix bounces it although it was delivered)."""
    logs = small_fs("size=256k,nr_inodes=3")  # the directory and two files
    log_file = logs / "scanner.log"
    (logs / "filler").write_bytes(b"")
    proc, port = _filter(tmp_path, sink, log_file)
    try:
        s = smtp(port)
        assert s.sendmail("a@example.org", ["b@example.test"], message("before")) == {}
        os.rename(log_file, logs / "scanner.log.1")  # logrotate; no inode for a new file
        assert s.sendmail("a@example.org", ["b@example.test"], message("full")) == {}
        (logs / "filler").unlink()  # room again: logging resumes
        assert s.sendmail("a@example.org", ["b@example.test"], message("after")) == {}
        s.quit()
    finally:
        proc.stop()
    assert len(sink.wait_for(3)) == 3
    stderr = proc.stderr_text()
    assert f"cannot write to the log file {log_file}: No space left on device" in stderr
    assert "Traceback" not in stderr
    text = log_file.read_text()
    assert "Passed CLEAN" in text and "<after@example.org>" in text
    assert "log line(s) could not be written" in text


def _zip_message(subject: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("report.txt", os.urandom(150_000))
    b64 = base64.encodebytes(buf.getvalue()).decode().replace("\n", "\r\n")
    body = ("--XX\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
            "--XX\r\nContent-Type: application/zip; name=report.zip\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" + b64 + "--XX--\r\n")
    return message(subject, body, extra="MIME-Version: 1.0\r\n"
                   "Content-Type: multipart/mixed; boundary=XX\r\n")


def test_a_full_decoder_spool_defers_instead_of_passing_unchecked(tmp_path: Path,
                                                                  sink: Sink, small_fs):
    """server.tmp_dir full: the attachment that should be spooled there cannot be
    decoded. That was DECODE_FAIL (a decoder bug on hostile input), so with the default
    unchecked_destiny the mail passed as UNCHECKED, its attachment never looked into;
    a full disk is our failure, not the mail's: 451, and Postfix retries."""
    spool = small_fs("size=1m")
    (spool / "filler").write_bytes(b"x" * 900_000)
    proc, port = _filter(tmp_path, sink, tmp_path / "filter" / "scanner.log",
                         extra="\n[decode]\nspool_threshold = 4096\n",
                         server_extra=f'tmp_dir = "{spool}"')
    try:
        s = smtp(port)
        with pytest.raises(smtplib_error()) as err:
            s.sendmail("a@example.org", ["b@example.test"], _zip_message("full"))
        assert err.value.smtp_code == 451
        assert b"DECODE_SPOOL_FAIL" in err.value.smtp_error
        assert sink.received == []
        (spool / "filler").unlink()  # room again
        assert s.sendmail("a@example.org", ["b@example.test"], _zip_message("room")) == {}
        s.quit()
    finally:
        proc.stop()
    assert len(sink.wait_for(1)) == 1
    assert b"UNCHECKED" not in sink.received[0].data
    log = "\n".join(proc.log_lines())
    assert f"decoding stopped: the temporary directory {spool}" in log
    assert "No space left on device" in log and "Traceback" not in log
    lines = proc.summary_lines()
    assert "Blocked CLEAN {TempFailedInbound}" in lines[0]
    assert "Passed CLEAN {RelayedInbound}" in lines[1]
    assert os.listdir(spool) == []  # nothing left behind either time


def test_a_status_file_on_a_full_disk_stops_start_up_with_the_key_named(tmp_path: Path,
                                                                        small_fs):
    """The status file is sized sparse and then written through mmap: with no block
    left, the master died of SIGBUS at start, saying nothing."""
    full = small_fs("size=64k")
    with open(full / "filler", "wb") as filler, contextlib.suppress(OSError):
        filler.write(b"x" * (64 << 10))  # as much as fits
    config = tmp_path / "scanner.toml"
    config.write_text(f'[server]\nworkers = 1\nstatus_file = "{full}/status"\n'
                      f'[[listeners]]\nport = {free_port()}\n'
                      f'[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
                      f'[quarantine]\ndirectory = "{tmp_path}/q"\nampdp_socket = ""\n')
    out = subprocess.run([sys.executable, "-m", "scanner", "serve", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert f"'server.status_file' {full}/status: cannot allocate it: No space left" \
        in out.stderr


def test_learn_on_a_full_disk_leaves_the_model_as_it_was(small_fs):
    """`scanner learn` (Dovecot's hook) writes the model next to the old one and renames
    it: with no room, it says so and the model stays whole and loadable."""
    models = small_fs("size=2m")
    model = models / "site.model"
    model.write_bytes((Path(__file__).parents[1] / "models" / "default.model").read_bytes())
    before = model.read_bytes()
    with open(models / "filler", "wb") as filler, contextlib.suppress(OSError):
        filler.write(b"x" * (2 << 20))
    out = subprocess.run([sys.executable, "-m", "scanner", "learn", "--spam", "--model",
                          str(model), "-"], input=message("cheap pills"), capture_output=True,
                         timeout=120)
    assert out.returncode != 0
    assert b"cannot write the model file (No space left on device)" in out.stderr
    assert b"Traceback" not in out.stderr
    assert model.read_bytes() == before
    assert sorted(p.name for p in models.iterdir()) == ["filler", "site.model",
                                                        "site.model.lock"]

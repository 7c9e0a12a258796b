"""Shared helpers for the test suite (not fixtures: plain functions)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from scanner.testing.filter import FilterProcess
from scanner.testing.postfix import free_port

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPORA = REPO.parent / "shared" / "corpora"


def filter_config(listen: int, reinject: int, *, lmtp_port: int | None = None,
                  extra: str = "", workers: int = 1, log_file: Path | None = None,
                  server_extra: str = "") -> str:
    """A TOML config for a test filter: loopback ports, a private quarantine, and no
    network checks (ClamAV, DNS) unless ``extra`` brings its own [checks] table."""
    text = f"""
[server]
workers = {workers}
hostname = "scanner.test"
message_timeout = 20
{f'log_file = "{log_file}"' if log_file else ''}
{server_extra}

[[listeners]]
port = {listen}
"""
    if lmtp_port:
        text += f"""
[[listeners]]
port = {lmtp_port}
protocol = "lmtp"
"""
    text += f"""
[reinject]
port = {reinject}
timeout = 3
connect_timeout = 2
"""
    if "[checks]" not in extra:
        text += '\n[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
    if "[quarantine]" not in extra:
        qdir = (log_file.parent if log_file else Path("/tmp")) / "quarantine"
        text += f'\n[quarantine]\ndirectory = "{qdir}"\nampdp_socket = ""\n'
    return text + extra


def start_filter(tmp: Path, reinject: int, **kw: object) -> tuple[FilterProcess, int]:
    port = free_port()
    lmtp = kw.pop("lmtp_port", None)
    ports = [port] + ([lmtp] if lmtp else [])
    proc = FilterProcess(tmp, filter_config(port, reinject, lmtp_port=lmtp,  # type: ignore[arg-type]
                                            log_file=tmp / "scanner.log", **kw), ports)
    proc.start()
    return proc, port


def message(subject: str = "test", body: str = "hello\r\n", extra: str = "") -> bytes:
    return (f"From: Alice <alice@example.org>\r\nTo: bob@example.test\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@example.org>\r\n"
            f"{extra}\r\n{body}").encode()


@contextlib.contextmanager
def at_data(port: int) -> Iterator[tuple[socket.socket, BinaryIO]]:
    """A raw connection to the filter on ``port`` at DATA's 354 (HELO, one sender, one
    recipient), for tests that send the body their own way; its socket and a reader."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        f = conn.makefile("rb")
        f.readline()
        conn.sendall(b"HELO t\r\nMAIL FROM:<a@example.org>\r\n"
                     b"RCPT TO:<b@example.test>\r\nDATA\r\n")
        assert [f.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        yield conn, f


def smtp(port: int) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("postfix.test")
    return s


def handle_at_sink(config: Any, checks: list, task: Any, sink_port: int, port: int = 10024,
                   bank: str = "", run_cpu: Any = None) -> list[str]:
    """Run ``task`` through a real Processor (no SMTP listener) whose next hop is the
    test sink on ``sink_port``; the replies it would give Postfix. ``run_cpu``: the
    processor's CPU runner (default: in the event loop)."""
    from scanner.pipeline.processor import Listener, Processor
    from scanner.reinject.deliver import NextHop
    from scanner.scores import load_scores

    async def run_inline(func: Any, *args: Any) -> Any:
        return func(*args)

    hop = NextHop("127.0.0.1", sink_port, False, 2, 5, "scanner.test", True)
    proc = Processor(config, checks, load_scores(), hop, "scanner.test",
                     run_cpu=run_cpu or run_inline)

    async def go() -> list[str]:
        try:
            return await proc.handle(task, Listener(port, "ESMTP", bank))
        finally:
            await proc._pool.close()  # no connection left open to the sink

    return asyncio.run(go())


class CallCounter:
    """Wraps a compiled pattern (or any object) and counts the calls of one method, for
    tests that bound how often a search is tried instead of timing it."""

    def __init__(self, target: object, method: str) -> None:
        self.pattern, self.method, self.calls = target, method, 0

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.pattern, name)
        if name != self.method:
            return attr

        def counted(*args: object) -> object:
            self.calls += 1
            return attr(*args)

        return counted


_MIME_TOOLS = """
use strict; use warnings; use MIME::Parser;
my $p = MIME::Parser->new; $p->output_to_core(1); $p->decode_headers(0);
my $e = $p->parse_open($ARGV[0]) or die "cannot parse";
print $e->head->mime_attr('content-type.report-type'), "\\n";
for my $part ($e->parts) {
  print $part->head->mime_type, " ", ($part->head->mime_encoding // ''), "\\n";
}
print "WARN $_\\n" for $p->results->warnings;
"""


def mime_tools_structure(data: bytes, tmp: Path) -> list[str]:
    """How Perl's MIME-tools (amavis's MIME parser, an independent reader) sees a
    report: its report-type, then "type encoding" of each part, then "WARN ..." lines
    for whatever it found wrong. Skips the test without Perl's MIME::Parser."""
    if shutil.which("perl") is None or subprocess.run(
            ["perl", "-MMIME::Parser", "-e1"], capture_output=True).returncode:
        pytest.skip("Perl's MIME-tools (libmime-tools-perl) not installed")
    path = tmp / "report.eml"
    path.write_bytes(data)
    out = subprocess.run(["perl", "-e", _MIME_TOOLS, str(path)], capture_output=True,
                         check=True)
    return out.stdout.decode().splitlines()


def scan_json(tmp: Path, raw: bytes, checks: str) -> dict:
    """``scanner scan --json`` of ``raw`` in a real process, with ``checks`` (TOML) and a
    quarantine directory under ``tmp``: its JSON report."""
    cfg = tmp / "c.toml"
    cfg.write_text(checks + f'[quarantine]\ndirectory = "{tmp / "q"}"\nampdp_socket = ""\n')
    msg = tmp / "m.eml"
    msg.write_bytes(raw)
    run = subprocess.run([sys.executable, "-m", "scanner", "scan", "-c", str(cfg), "--json",
                          str(msg)], capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)

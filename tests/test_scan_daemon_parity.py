"""``scanner scan FILE --json`` shows the symbols a running ``scanner serve`` gives the
same message, sender, recipient and client.

The daemon's symbols are read where it writes them: ``X-Spam-Status: ... tests=[...]``
of the passed copy at the next hop (``tag_level = -100``: on every message; symbols of
weight 0 are not listed there), and its score in the summary log line (``Hits:``). The
summary line names no symbols. ClamAV and the DNS checks (auth, dnsbl, uribl) are off
on both sides; the classifier is on (it reads the client's name and address).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.testing.sink import Sink
from tests.helpers import filter_config, smtp, start_filter

SENDER, RCPT = "alice@example.org", "bob@example.test"
EXTRA = ('[policy]\ntag_level = -100.0\n'
         '[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl"]\n')


def _messages() -> dict[str, bytes]:
    head = (f"From: Alice <{SENDER}>\r\nTo: {RCPT}\r\nDate: Sun, 6 Dec 2026 09:00:00 "
            "+0000\r\nMIME-Version: 1.0\r\n")
    inner = ("--in\r\nContent-Type: text/plain\r\n\r\nThe invoice is attached.\r\n--in\r\n"
             'Content-Type: text/html; name="login.html"\r\n'
             'Content-Disposition: attachment; filename="login.html"\r\n\r\n'
             '<form><input type="password" name="p"></form>\r\n'
             "--in--\r\n")
    return {
        "qp": (head + "Subject: version\r\nMessage-ID: <qp@example.org>\r\n"
               "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n"
               "\r\nversion==\r\n3D5 is out=\r\n now\r\n").encode(),
        "b64multipart": (head + "Subject: Invoice\r\nMessage-ID: <b64@example.org>\r\n"
                         'Content-Type: multipart/mixed; boundary="in"\r\n'
                         "Content-Transfer-Encoding: base64\r\n\r\n"
                         + base64.encodebytes(inner.encode()).decode().replace("\n", "\r\n")
                         ).encode(),
        "spammy": (head + "Subject: FREE MONEY!!! ACT NOW\r\n"
                   "Content-Type: text/html; charset=utf-8\r\n\r\n"
                   "<html><body><a href=\"http://198.51.100.7/win\">http://www.paypal.com/"
                   "</a> Claim your prize, 100% guaranteed, no risk!</body></html>\r\n"
                   ).encode(),
        "eightbit": (head + "Subject: caf\xc3\xa9 \xe2\x82\xac\r\nMessage-ID: <8@example.org>\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n\r\nBonjour \xc3\xa0 tous\r\n"
                     ).encode("latin-1"),
    }


def _tests_field(data: bytes) -> dict[str, float]:
    """SYMBOL -> points from the X-Spam-Status header of a delivered copy."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    m = re.search(r"^X-Spam-Status:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M)
    assert m is not None, head
    value = " ".join(m.group(1).split())
    listed = re.search(r"tests=\[([^\]]*)\]", value)
    assert listed is not None, value
    out: dict[str, float] = {}
    for item in filter(None, (i.strip() for i in listed.group(1).split(","))):
        name, points = item.split("=")
        out[name] = float(points)
    return out


def _scan(config: Path, files: list[Path], *options: str) -> list[dict]:
    run = subprocess.run([sys.executable, "-m", "scanner", "scan", "--json", "-c", str(config),
                          "--rcpt", RCPT, *options, *map(str, files)],
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def _weighted(result: dict) -> dict[str, float]:
    return {k: round(v, 3) for k, v in result["symbols"].items() if round(v, 3)}


@pytest.mark.parametrize("sender, client", [
    (SENDER, None), (SENDER, ("203.0.113.9", "mail.example.net", "mx.test")), ("", None)],
    ids=["no-xforward", "xforward", "null-sender"])
def test_scan_shows_the_daemons_symbols(tmp_path: Path, sink: Sink, sender: str,
                                        client: tuple[str, str, str] | None) -> None:
    messages = _messages()
    files = []
    for name, raw in messages.items():
        (tmp_path / f"{name}.eml").write_bytes(raw)
        files.append(tmp_path / f"{name}.eml")
    proc, port = start_filter(tmp_path, sink.port, extra=EXTRA)
    try:
        s = smtp(port)
        for raw in messages.values():
            if client is not None:
                addr, name, helo = client
                assert s.docmd(f"XFORWARD ADDR={addr} NAME={name} HELO={helo}")[0] == 250
            assert s.sendmail(sender, [RCPT], raw) == {}
        s.quit()
    finally:
        proc.stop()
    received = sink.wait_for(len(messages))
    assert len(received) == len(messages)
    config = tmp_path / "scan.toml"
    config.write_text(filter_config(port, sink.port, extra=EXTRA))
    options = ["--client-addr", client[0], "--client-name", client[1], "--client-helo", client[2]] \
        if client else []
    scanned = _scan(config, files, "--sender", f"<{sender}>", *options)
    hits = [ln.split("Hits: ")[1].split(",")[0] for ln in proc.summary_lines()]
    for name, got, result, score in zip(messages, received, scanned, hits, strict=True):
        assert _weighted(result) == _tests_field(got.data), name
        assert score == (f"{result['score']:.3f}" if _weighted(result) else "-"), name

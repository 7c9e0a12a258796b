"""``scanner scan``: the pipeline on files, human and JSON output, unreadable files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

NO_CLAMD = '[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'


def _zip_message(tmp: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("inner/readme.txt", "hello\n")
    import base64
    b64 = base64.encodebytes(buf.getvalue()).decode().replace("\n", "\r\n")
    raw = ("From: a@example.org\r\nSubject: z\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
           "Content-Type: text/plain\r\n\r\nsee zip\r\n--b\r\n"
           "Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n"
           'Content-Disposition: attachment; filename="a.zip"\r\n\r\n' + b64 + "--b--\r\n")
    path = tmp / "zip.eml"
    path.write_bytes(raw.encode())
    return path


def _scan(tmp: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    cfg = tmp / "c.toml"
    cfg.write_text(NO_CLAMD)
    return subprocess.run([sys.executable, "-m", "scanner", "scan", "-c", str(cfg), *args],
                          input=stdin, capture_output=True, timeout=60)


def test_scan_json_lists_parts_and_symbols(tmp_path: Path):
    msg = _zip_message(tmp_path)
    run = _scan(tmp_path, "--json", str(msg))
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["file"] == str(msg) and data["category"] == "CLEAN"
    names = [p["name"] for p in data["parts"]]
    assert "a.zip" in names and "inner/readme.txt" in names
    inner = [p for p in data["parts"] if p["name"] == "inner/readme.txt"][0]
    assert inner["path"].startswith("P=p004,L=1/2/1,") and len(inner["sha256"]) == 64
    assert isinstance(data["symbols"], dict) and isinstance(data["score"], float)


def test_scan_text_from_stdin_and_missing_file(tmp_path: Path):
    msg = _zip_message(tmp_path)
    run = _scan(tmp_path, "-", str(tmp_path / "missing.eml"), stdin=msg.read_bytes())
    assert run.returncode == 1
    out = run.stdout.decode()
    assert out.startswith("== -\n") and "N='a.zip'" in out and "category: CLEAN" in out
    assert b"cannot read" in run.stderr and b"missing.eml" in run.stderr


def test_a_sender_option_is_held_as_the_daemon_holds_the_envelope_sender():
    """aiosmtpd gives the daemon the address without brackets and the handler turns
    ``<>`` into "": ``--sender '<>'`` is the null sender, not the string "<>"."""
    from scanner.cli.scan_cmd import envelope_sender
    assert envelope_sender("<>") == ""
    assert envelope_sender(" <a@example.org> ") == "a@example.org"
    assert envelope_sender("a@example.org") == "a@example.org"
    assert envelope_sender("") == ""


def test_explain_reads_the_client_the_classifier_read(tmp_path: Path):
    """--explain splits the decision the bayes check made, client name and address
    included (they are features of the classifier)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl"]\n')
    msg = tmp_path / "m.eml"
    msg.write_bytes("From: a@example.org\r\nTo: b@example.test\r\nSubject: caf\u00e9\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n\r\nBonjour \u00e0 tous\r\n"
                    .encode())
    run = subprocess.run([sys.executable, "-m", "scanner", "scan", "-c", str(cfg), "--json",
                          "--explain", "--client-addr", "203.0.113.9", "--client-name",
                          "mail.example.net", str(msg)], capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    [bayes] = [h for h in data["hits"] if h["source"] == "bayes"]
    assert float(bayes["options"][0]) == data["explain"]["probability"]


def test_a_policy_database_that_cannot_be_read_is_reported_not_a_traceback(tmp_path: Path):
    """The daemon defers such a message (451); ``scanner scan`` says so for that file,
    goes on with the next one, and exits 1."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[policy]\nsql_lookup = "sqlite:{tmp_path / "gone.sqlite"}"\n' + NO_CLAMD)
    msg = _zip_message(tmp_path)
    run = subprocess.run([sys.executable, "-m", "scanner", "scan", "-c", str(cfg), str(msg)],
                         capture_output=True, timeout=60)
    assert run.returncode == 1
    assert b"policy SQL lookup failed" in run.stderr and b"would defer it (451)" in run.stderr
    assert b"Traceback" not in run.stderr

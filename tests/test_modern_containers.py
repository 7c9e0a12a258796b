"""Today's malware containers through ``scanner scan``: a .hta in a OneNote section and
an exe smuggled in an HTML attachment make the message BANNED."""

from __future__ import annotations

import base64
import zipfile
from pathlib import Path

import pytest

from scanner.testing.clamd import TESTFILES_DIR, ClamdInstance, clamd_binary
from tests.decoders.builders import message, onenote_with_named, pe_exe, zip_bytes
from tests.helpers import scan_json

CONFIG = '[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n'
HTA = (b'<html><head><HTA:APPLICATION id="x"/><script language="VBScript">'
       b'CreateObject("WScript.Shell").Run "powershell -enc AAAA"</script></head></html>\n')


def _scan(tmp: Path, raw: bytes, checks: str = CONFIG) -> dict:
    return scan_json(tmp, raw, checks)


def _banned_names(data: dict) -> list[str]:
    paths = [h["options"][0] for h in data["hits"] if h["symbol"] == "BANNED_FILE"]
    return [p.rsplit("N=", 1)[-1] for p in paths]


def test_a_hta_in_a_onenote_attachment_is_banned(tmp_path: Path) -> None:
    raw = message(("Invoice.one", onenote_with_named([(HTA, ".hta")])))
    data = _scan(tmp_path, raw)
    assert data["category"] == "BANNED", data["symbols"]
    assert _banned_names(data) == ["embedded-1.hta"]


def _smuggling_page(payload: bytes) -> bytes:
    return (b"<html><body><script>var d = '" + base64.b64encode(payload) + b"';"
            b"var a = document.createElement('a'); a.download = 'Invoice.zip';"
            b"a.href = URL.createObjectURL(new Blob([Uint8Array.from(atob(d), "
            b"c => c.charCodeAt(0))])); a.click();</script></body></html>\n")


def test_an_exe_smuggled_in_an_html_attachment_is_banned(tmp_path: Path) -> None:
    exe = pe_exe(bytes(range(256)) * 8)
    page = _smuggling_page(zip_bytes({"Invoice.exe": exe}, method=zipfile.ZIP_STORED))
    data = _scan(tmp_path, message(("statement.html", page)))
    assert data["category"] == "BANNED", data["symbols"]
    assert "Invoice.exe" in _banned_names(data)


@pytest.mark.skipif(clamd_binary() is None or not (TESTFILES_DIR / "clam.exe").is_file(),
                    reason="needs clamav-daemon and clamav-testfiles")
def test_clamav_sees_a_test_virus_smuggled_in_html(tmp_path: Path) -> None:
    """clamd alone does not decode a script's string literal: the smuggled zip goes to
    it as a decoded part, and the message is VIRUS."""
    clam = (TESTFILES_DIR / "clam.exe").read_bytes()
    payload = zip_bytes({"Invoice.dat": clam, "readme.txt": b"open the invoice\n" * 64},
                        method=zipfile.ZIP_STORED)
    clamd = ClamdInstance(tmp_path / "clamd")
    clamd.start()
    try:
        checks = ('[checks]\ndisabled = ["auth", "dnsbl", "uribl", "bayes"]\n'
                  f'[checks.settings.clamav]\nendpoints = ["unix:{clamd.socket_path}"]\n')
        data = _scan(tmp_path, message(("statement.html", _smuggling_page(payload))), checks)
    finally:
        clamd.close()
    assert data["category"] == "VIRUS", data["symbols"]
    assert "CLAMAV_VIRUS" in data["symbols"]

"""EICAR wherever the decoders can reach it: plain body, base64 attachment, zip, zip in
tar.gz in a forwarded message/rfc822, 7z; and Debian's clam.tnef for TNEF (no TNEF
writer exists here, so the test-signature sample stands in for EICAR). The real
decoders and a real clamd run; each must give CLAMAV_VIRUS."""

from __future__ import annotations

import asyncio
import base64
import io
import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest

import scanner.config
from scanner.checks.base import CheckContext
from scanner.checks.clamav import ClamAV, ClamAVSettings
from scanner.testing.clamd import ClamdInstance, clamd_binary, eicar
from scanner.testing.tasks import task_from_bytes

TNEF = Path("/usr/share/clamav-testfiles/clam.tnef")


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    if clamd_binary() is None:
        pytest.skip("clamd not installed (apt-get install clamav-daemon)")
    inst = ClamdInstance(tmp_path_factory.mktemp("clamd"))
    inst.start()

    async def run_cpu(func, *args):
        return func(*args)

    yield ClamAV(ClamAVSettings(endpoints=(inst.unix_endpoint,)),
                 CheckContext(config=scanner.config.load(None), run_cpu=run_cpu))
    inst.close()


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def _targz(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _7z(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as z:
        z.writestr(data, name)
    return buf.getvalue()


def _attach(name: str, payload: bytes, ctype: str = "application/octet-stream") -> bytes:
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (b"From: a@example.org\r\nTo: b@example.test\r\nSubject: w\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n'
            b"Content-Type: text/plain\r\n\r\nsee attached\r\n--x\r\n"
            b"Content-Type: " + ctype.encode() + b"\r\nContent-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="' + name.encode() + b'"\r\n\r\n'
            + b64 + b"--x--\r\n")


def _forwarded(inner: bytes) -> bytes:
    return (b"From: c@example.org\r\nTo: d@example.test\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="f"\r\n\r\n--f\r\n'
            b"Content-Type: text/plain\r\n\r\nforwarding\r\n--f\r\n"
            b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--f--\r\n")


def _cases() -> dict[str, bytes]:
    e = eicar()
    return {
        "plain body": b"From: a@example.org\r\nSubject: p\r\n\r\n" + e + b"\r\n",
        "base64 attachment": _attach("eicar.com", e),
        "zip": _attach("e.zip", _zip("eicar.com", e), "application/zip"),
        "zip in tar.gz in message/rfc822": _forwarded(
            _attach("bundle.tar.gz", _targz("inner.zip", _zip("eicar.com", e)),
                    "application/gzip")),
        "7z": _attach("e.7z", _7z("eicar.com", e), "application/x-7z-compressed"),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_eicar_is_found_in(check: ClamAV, case: str):
    with task_from_bytes(_cases()[case]) as task:
        hits = asyncio.run(check.run(task))
    assert [h.symbol for h in hits] == ["CLAMAV_VIRUS"], hits
    assert any("eicar" in o.lower() for o in hits[0].options)


def test_tnef_sample_is_found(check: ClamAV):
    if not TNEF.exists():
        pytest.skip("clamav-testfiles not installed (apt-get install clamav-testfiles)")
    with task_from_bytes(_attach("winmail.dat", TNEF.read_bytes(),
                                 "application/ms-tnef")) as task:
        assert any(p.detected_type == "tnef" for p in task.parts)
        hits = asyncio.run(check.run(task))
    assert [h.symbol for h in hits] == ["CLAMAV_VIRUS"]

"""The real filter process (workers, CPU thread pool) with an ORIGINATING listener:
our users' mail to outside gets the disclaimer and leaves DKIM-signed (dkimpy verifies
it); the same mail through the inbound listener gets none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from scanner.testing.filter import FilterProcess
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from tests.auth.conftest import Keys
from tests.helpers import filter_config, smtp

MAIL = (b"From: Carol <carol@signer.test>\r\nTo: dave@elsewhere.test\r\nSubject: minutes\r\n"
        b"Message-ID: <fd1@signer.test>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n--alt\r\n'
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe\r\n--alt\r\n"
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"PGh0bWw+PGJvZHk+R3LDvMOfZTwvYm9keT48L2h0bWw+\r\n--alt--\r\n")


@pytest.fixture
def scanner(tmp_path: Path, sink: Sink, dkim_keys: Keys) -> Iterator[tuple[int, int]]:
    (tmp_path / "d.txt").write_text("Signer GmbH – vertraulich\n")
    (tmp_path / "d.html").write_text("<p>Signer GmbH &ndash; vertraulich</p>\n")
    inbound, originating = free_port(), free_port()
    extra = f"""
[[listeners]]
port = {originating}
policy_bank = "ORIGINATING"

[policy]
local_domains = ["signer.test"]
disclaimer_text = "{tmp_path}/d.txt"
disclaimer_html = "{tmp_path}/d.html"

[policy_banks.ORIGINATING]
bypass_spam_checks = true
allow_disclaimers = true
outbound_disclaimers_only = true

[[checks.settings.dkim_sign.keys]]
domain = "signer.test"
selector = "s1"
key_file = "{dkim_keys.files['k1']}"
"""
    text = filter_config(inbound, sink.port, extra=extra, log_file=tmp_path / "scanner.log")
    proc = FilterProcess(tmp_path, text, [inbound, originating])
    proc.start()
    yield inbound, originating
    proc.stop()


def send(port: int) -> None:
    s = smtp(port)
    assert s.sendmail("carol@signer.test", ["dave@elsewhere.test"], MAIL) == {}
    s.quit()


def test_outgoing_copy_has_the_disclaimer_and_verifies_inbound_has_none(
        scanner: tuple[int, int], sink: Sink, dkim_keys: Keys) -> None:
    inbound, originating = scanner
    send(originating)
    data = sink.wait_for(1)[-1].data
    assert data.startswith(b"DKIM-Signature: ")
    body = data.split(b"\r\n\r\n", 1)[1]
    assert b"Content-Type: text/plain; charset=UTF-8" in body  # '–' is not in latin-1
    assert b"Gr=C3=BC=C3=9Fe\r\n\r\nSigner GmbH =E2=80=93 vertraulich" in body
    assert dkim.verify(data, dnsfunc=lambda name, timeout=5: dkim_keys.records["k1"].encode())
    send(inbound)
    assert sink.wait_for(2)[-1].data.endswith(MAIL.split(b"\r\n\r\n", 1)[1])

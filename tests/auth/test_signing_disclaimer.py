"""A disclaimer and DKIM signing on one copy: the signature covers the final body (the
disclaimer in it), so the copy verifies with dkimpy."""

from __future__ import annotations

from pathlib import Path

import dkim

from scanner.checks.dkim import DkimSign
from scanner.config import loads
from scanner.task import ClientInfo, Envelope, Recipient, Task
from scanner.testing.sink import Sink
from tests.auth.conftest import Keys, make_check
from tests.helpers import handle_at_sink

MESSAGE = (b"From: Carol <carol@mail.signer.test>\r\nTo: dave@elsewhere.test\r\n"
           b"Subject: minutes\r\nMessage-ID: <c1@signer.test>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
           b"\r\nAttached.\r\n")


def test_the_signature_covers_the_disclaimer_and_verifies(dkim_keys: Keys, sink: Sink,
                                                          tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("Signer Ltd – confidential\n")
    config = loads('[server]\nhostname = "scanner.test"\n[checks]\ndisabled = ["clamav"]\n'
                   f'[policy]\nlocal_domains = [".signer.test"]\n'
                   f'disclaimer_text = "{tmp_path}/d.txt"\n'
                   "[policy_banks.ORIGINATING]\nallow_disclaimers = true\n"
                   "bypass_spam_checks = true\n", "t.toml")
    signer = make_check(DkimSign, {"keys": [{"domain": "signer.test", "selector": "s1",
                                            "key_file": str(dkim_keys.files["k1"])}]}, config)
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=MESSAGE,
                envelope=Envelope("carol@signer.test", (Recipient("dave@elsewhere.test"),)),
                client=ClientInfo(addr="127.0.0.1", helo="localhost"), policy_bank="ORIGINATING")
    replies = handle_at_sink(config, [signer], task, sink.port, 10026, "ORIGINATING")
    assert replies[0].startswith("250"), replies
    data = sink.wait_for(1)[-1].data
    assert data.startswith(b"DKIM-Signature: ")
    assert data.endswith("Attached.\r\n\r\nSigner Ltd – confidential\r\n".encode())
    assert dkim.verify(data, dnsfunc=lambda name, timeout=5: dkim_keys.records["k1"].encode())

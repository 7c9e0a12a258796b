"""The real filter process (workers, CPU thread pool): inbound mail with XFORWARD gets
Authentication-Results; mail on the ORIGINATING listener leaves DKIM-signed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.auth.dkim_verify import verify_all
from scanner.dns import Deadline, DnsSettings, get_client
from scanner.testing.dns_server import DnsServer
from scanner.testing.filter import FilterProcess
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from tests.auth.conftest import Keys, run, run_inline
from tests.helpers import filter_config, smtp


@pytest.fixture
def scanner(tmp_path: Path, sink: Sink, dns_server: DnsServer, dkim_keys: Keys
            ) -> Iterator[tuple[int, int]]:
    inbound, originating = free_port(), free_port()
    extra = f"""
[[listeners]]
port = {originating}
policy_bank = "ORIGINATING"

[checks]
disabled = ["clamav"]

[checks.settings.auth]
authserv_id = "scanner.test"
[checks.settings.auth.dns]
resolvers = ["{dns_server.resolver}"]
timeout = 1.0
budget = 3.0

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


def send(port: int, sender: str, body: bytes, xforward: str | None = None) -> None:
    s = smtp(port)
    if xforward:
        code, _ = s.docmd("XFORWARD", xforward)
        assert code == 250
    assert s.sendmail(sender, ["rcpt@elsewhere.test"], body) == {}
    s.quit()


def test_inbound_and_originating(scanner: tuple[int, int], sink: Sink,
                                 dns_server: DnsServer) -> None:
    inbound, originating = scanner
    mail = (b"From: Alice <alice@good.test>\r\nTo: rcpt@elsewhere.test\r\nSubject: hi\r\n"
            b"Message-ID: <e2e1@good.test>\r\n\r\nHello.\r\n")
    send(inbound, "alice@good.test", mail,
         "ADDR=192.0.2.1 NAME=mail.good.test HELO=mail.good.test PROTO=ESMTP")
    head = sink.wait_for(1)[-1].data.split(b"\r\n\r\n")[0].decode()
    assert "Authentication-Results: scanner.test;\r\n\tspf=pass" in head
    assert "dmarc=pass (p=reject dis=none) header.from=good.test" in head

    out = mail.replace(b"alice@good.test", b"carol@signer.test")
    send(originating, "carol@signer.test", out)
    data = sink.wait_for(2)[-1].data
    assert data.startswith(b"DKIM-Signature: ")
    assert b"Authentication-Results" not in data  # our users' mail is not verified
    client = get_client(DnsSettings(resolvers=(dns_server.resolver,), cache_size=0))
    deadline = Deadline(5)
    [result] = run(verify_all(data, lambda n, t: client.query(n, t, deadline), run_inline))
    assert (result.result, result.domain) == ("pass", "signer.test")


def test_forged_results_under_our_name_are_left_out(scanner: tuple[int, int],
                                                    sink: Sink) -> None:
    """RFC 8601 section 5: an Authentication-Results header claiming our authserv-id
    (here a forged dkim=pass for a bank) does not reach the mailbox; other hosts' stay."""
    inbound, _ = scanner
    mail = (b"From: Alice <alice@good.test>\r\nTo: rcpt@elsewhere.test\r\nSubject: hi\r\n"
            b"Authentication-Results: scanner.test;\r\n\tdkim=pass header.d=bank.example\r\n"
            b"Authentication-Results: (trust me) SCANNER.TEST; dmarc=pass\r\n"
            b"Authentication-Results: relay.other.example; spf=pass\r\n"
            b"Message-ID: <e2e2@good.test>\r\n\r\nAuthentication-Results: scanner.test; body\r\n")
    send(inbound, "alice@good.test", mail,
         "ADDR=192.0.2.1 NAME=mail.good.test HELO=mail.good.test PROTO=ESMTP")
    data = sink.wait_for(1)[-1].data
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"bank.example" not in head and b"trust me" not in head
    assert head.count(b"Authentication-Results: scanner.test;") == 1  # ours, on top
    assert head.index(b"Authentication-Results: scanner.test;") < head.index(b"From: Alice")
    assert b"Authentication-Results: relay.other.example; spf=pass\r\n" in head
    assert head.endswith(b"Message-ID: <e2e2@good.test>")
    assert body == b"Authentication-Results: scanner.test; body\r\n"

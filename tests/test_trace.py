"""The trace Received header: its address literal for IPv4 and IPv6 peers."""

from __future__ import annotations

import pytest

from scanner.task import Envelope, Recipient, Task
from scanner.trace import received_header


def _task(peer: tuple[str, int] | None) -> Task:
    return Task(mail_id="AbCdEfGhIjKl", raw=b"", peer=peer, helo="mx.test",
                envelope=Envelope("a@b.test", (Recipient("c@d.test"),)))


@pytest.mark.parametrize(("peer", "literal"), [
    (("127.0.0.1", 40000), "[127.0.0.1]"),
    (("::1", 40000), "[IPv6:::1]"),
    (("2001:db8::25", 40000), "[IPv6:2001:db8::25]"),
    (None, "[127.0.0.1]"),
])
def test_peer_address_literal(peer: tuple[str, int] | None, literal: str) -> None:
    name, value = received_header(_task(peer), "filter.test", 10024, "ESMTP", ["c@d.test"])
    assert name == "Received"
    assert value.startswith(f"from mx.test ({literal})\r\n\tby filter.test ")
    assert "for <c@d.test>;" in value


@pytest.mark.parametrize(("protocol", "smtputf8", "shown"), [
    ("ESMTP", False, "ESMTP"), ("LMTP", False, "LMTP"),
    ("ESMTP", True, "UTF8SMTP"), ("LMTP", True, "UTF8LMTP"),
])
def test_smtputf8_mail_is_received_with_rfc6531_protocol(protocol: str, smtputf8: bool,
                                                         shown: str) -> None:
    """RFC 6531 4.3 (and amavis: 'UTF8' . proto, UTF8ESMTP made UTF8SMTP)."""
    task = Task(mail_id="AbCdEfGhIjKl", raw=b"", peer=None, helo="mx.test",
                envelope=Envelope("δ@b.test", (Recipient("c@d.test"),), smtputf8=smtputf8))
    _, value = received_header(task, "filter.test", 10024, protocol, ["c@d.test"])
    assert f" with {shown} id AbCdEfGhIjKl" in value

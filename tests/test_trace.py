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

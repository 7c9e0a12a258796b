"""The summary line's policy banks and LOCAL, as amavis writes them after the actions."""

from __future__ import annotations

import logging

import pytest

from scanner.config import loads
from scanner.logline import Summary, render
from scanner.task import ClientInfo, Envelope, Recipient, Task
from scanner.testing.sink import Sink
from tests.helpers import handle_at_sink, message


def _summary(**kw: object) -> Summary:
    base: dict = dict(log_id="00001-01", verb="Passed", category="CLEAN",
                      actions=["RelayedOutbound"], client_addr="10.0.0.5", client_port="4000",
                      sender="a@example.org", recipients=["b@example.net"], queue_id="Q1",
                      message_id="<m@x>", mail_id="abcdefghijkl", hits="-", size=10,
                      queued_as=["N1"], elapsed_ms=5)
    return Summary(**{**base, **kw})


def test_render_banks_and_local() -> None:
    line = render(_summary(policy_banks=("MYNETS", "ORIGINATING"), local=True))
    assert "{RelayedOutbound}, MYNETS/ORIGINATING LOCAL [10.0.0.5]:4000 [10.0.0.5] <a@" in line
    plain = render(_summary(actions=["RelayedInbound"], client_addr="192.0.2.7"))
    assert "{RelayedInbound}, [192.0.2.7]:4000 [192.0.2.7] <a@example.org>" in plain
    # no XFORWARD: amavis writes no client fields ("[]:0 []" made logwatch's amavis
    # script report the client ":0" instead of "*unknown IP")
    assert "{RelayedInbound}, ORIGINATING <a@" in render(
        _summary(actions=["RelayedInbound"], client_addr=None, policy_banks=("ORIGINATING",),
                 local=True))
    assert "{RelayedInbound}, <a@example.org> -> <b@example.net>, Queue-ID" in render(
        _summary(actions=["RelayedInbound"], client_addr=None))


def test_render_dkim_fields_after_queued_as() -> None:
    """amavis's order: ``queued_as: X, dkim_sd=s:d, dkim_new=s:d, N ms``."""
    line = render(_summary(dkim_sd=("s1:a.example", "ed:a.example"), dkim_new=("k:b.example",)))
    assert line.endswith("queued_as: N1, dkim_sd=s1:a.example,ed:a.example, "
                         "dkim_new=k:b.example, 5 ms")
    assert "dkim_" not in render(_summary())


@pytest.mark.parametrize(("bank", "addr", "shown"), [
    ("ORIGINATING", "127.0.0.1", "{RelayedOutbound}, ORIGINATING LOCAL [127.0.0.1]:"),
    ("ORIGINATING", "192.0.2.7", "{RelayedOutbound}, ORIGINATING [192.0.2.7]:"),
    ("", "192.0.2.7", "{RelayedInbound}, [192.0.2.7]:"),
    ("", "::1", "{RelayedInbound}, LOCAL [::1]:"),
])
def test_the_processor_logs_bank_and_local(sink: Sink, caplog, bank: str, addr: str,
                                           shown: str) -> None:
    config = loads('[checks]\nenabled = []\n[quarantine]\nampdp_socket = ""\n', "t.toml")
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=message("banks"),
                envelope=Envelope("a@example.org", (Recipient("b@example.net"),)),
                client=ClientInfo(addr=addr, port="4321"), policy_bank=bank)
    caplog.set_level(logging.INFO, logger="scanner")
    assert handle_at_sink(config, [], task, sink.port, 10026 if bank else 10024, bank)[0] \
        .startswith("250")
    [line] = [r.getMessage() for r in caplog.records if "mail_id: abcdefghijkl" in r.getMessage()]
    assert shown in line, line


def test_no_queue_id_or_message_id_field_without_one() -> None:
    """amavis's template writes ``[? %Q ||, Queue-ID: %Q]`` and ``[? %m ||, Message-ID:
    ...]``: no field at all when there is none (we wrote ``Queue-ID: -``)."""
    line = render(_summary(queue_id=None, message_id=""))
    assert "Queue-ID" not in line and "Message-ID" not in line, line
    assert "<b@example.net>, mail_id: abcdefghijkl, Hits: -, " in line, line
    both = render(_summary())
    assert "<b@example.net>, Queue-ID: Q1, Message-ID: <m@x>, mail_id: " in both, both

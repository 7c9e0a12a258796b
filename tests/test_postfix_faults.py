"""Nothing is lost: faults injected while mail flows through a real Postfix.

Each test ends with every sent message delivered, counted in the Maildirs; a
duplicate is only acceptable in SMTP's own window (after the next hop's 250 and
before ours reached Postfix), and these scenarios never reach that window.
"""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from tests.postfix_stack import Stack, connections_to, delivered_ids, require_postfix, wait_ids

pytestmark = [pytest.mark.postfix, pytest.mark.slow]

SLEEP = """
[checks]
disabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]
enabled = ["*", "fault_injection"]
[checks.settings.fault_injection]
mode = "sleep"
seconds = 3
"""
ONCE = SLEEP.replace('mode = "sleep"', 'mode = "once"')


def _msg(mid: str, fault: bool = False) -> bytes:
    extra = b"X-Scanner-Fault: yes\r\n" if fault else b""
    return (b"From: a@example.org\r\nTo: bob@example.test\r\nSubject: fault test\r\n"
            b"Message-ID: <" + mid.encode() + b"@example.org>\r\n" + extra + b"\r\nbody\r\n")


def _send_all(stack: Stack, mids: list[str], fault: bool = False) -> set[str]:
    def one(mid: str) -> str:
        stack.postfix.send("a@example.org", "bob@example.test", _msg(mid, fault))
        return f"<{mid}@example.org>"

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        return set(pool.map(one, mids))


@pytest.fixture
def make_stack():
    require_postfix()
    stacks: list[Stack] = []

    def factory(**kw: object) -> Stack:
        s = Stack(**kw).start()  # type: ignore[arg-type]
        stacks.append(s)
        return s

    yield factory
    for s in stacks:
        s.remove()


def test_next_hop_down_for_30s_then_back(make_stack):
    stack = make_stack()
    stack.set_reinjection(up=False)
    wanted = _send_all(stack, [f"hopdown-{i}" for i in range(10)])
    time.sleep(30)
    assert delivered_ids(stack) == {}, "delivered while the next hop was down"
    assert len(stack.postfix.queue()) == 10, "Postfix must hold every deferred message"
    log = stack.postfix.log_text()
    assert "status=deferred" in log and "451 4.4.1" in log
    stack.set_reinjection(up=True)
    stack.postfix.flush()
    ids = wait_ids(stack, wanted, 90)
    assert all(ids[m] == 1 for m in wanted)
    assert stack.postfix.queue() == []


def test_filter_killed_mid_transaction_and_restarted(make_stack):
    stack = make_stack(extra=SLEEP)
    ids_sent = [f"killed-{i}" for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(_send_all, stack, ids_sent, True)
        deadline = time.monotonic() + 30
        # wait until Postfix has handed messages over and they sit inside the filter
        while time.monotonic() < deadline and "fault" not in _filter_busy(stack):
            time.sleep(0.2)
        time.sleep(1.0)
        in_flight = connections_to(stack.filter_port)
        stack.filter.kill()  # SIGKILL master and workers while DATA is unanswered
        wanted = future.result(60)
    assert in_flight > 0, "the kill must hit open transactions"
    assert delivered_ids(stack) == {}
    log = stack.postfix.log_text()
    assert "lost connection" in log or "Connection reset" in log or "status=deferred" in log
    stack.filter.start()
    stack.postfix.flush()
    ids = wait_ids(stack, wanted, 120)
    duplicates = {m: c for m, c in ids.items() if c > 1}
    assert duplicates == {}, f"duplicates outside SMTP's window: {duplicates}"


def test_exception_in_a_check_defers_then_delivers(make_stack):
    stack = make_stack(extra=ONCE, workers=1)
    wanted = _send_all(stack, [f"boom-{i}" for i in range(5)], fault=True)
    ids = wait_ids(stack, wanted, 90)
    assert all(ids[m] == 1 for m in wanted)
    log = stack.postfix.log_text()
    assert log.count("451 4.5.0 Error in processing") >= 5
    filter_log = "\n".join(stack.filter.log_lines())
    assert filter_log.count("check fault_injection failed") == 5


def _filter_busy(stack: Stack) -> str:
    """Non-empty once Postfix has delivered at least one message to the filter."""
    return "fault" if connections_to(stack.filter_port) else ""


@pytest.mark.parametrize(("transport", "listener"), [("lmtp", "smtp"), ("smtp", "lmtp")])
def test_a_transport_of_the_wrong_protocol_defers_instead_of_bouncing(make_stack,
                                                                     transport, listener):
    """Postfix's lmtp transport at an SMTP listener (or smtp at LMTP): the greeting gets
    421, so Postfix defers the mail (a 5xx bounced it to the sender), the filter logs
    why, and the mail waits in the queue for the configuration to be mended."""
    stack = make_stack(protocol=transport, listener_protocol=listener, workers=1)
    qid = stack.postfix.send("a@example.org", "bob@example.test", _msg(f"wrong-{transport}"))
    greeting = "LHLO" if transport == "lmtp" else "EHLO"
    deadline = time.monotonic() + 60
    entry: dict = {}
    while time.monotonic() < deadline:
        entry = next((e for e in stack.postfix.queue() if e["queue_id"] == qid), {})
        reasons = " ".join(r.get("delay_reason", "") for r in entry.get("recipients", []))
        # the reason is written while the file is still in "active"; wait for the move
        if "421 4.3.5" in reasons and entry.get("queue_name") == "deferred":
            break
        time.sleep(0.5)
    assert entry.get("queue_name") == "deferred", entry
    assert f"421 4.3.5 {greeting}" in reasons, entry
    log = stack.postfix.log_text()
    assert f"{qid}: to=<bob@example.test>" in log and "status=bounced" not in log
    assert not stack.postfix.maildir_messages("bob")
    assert any(f"greeted with {greeting}" in ln for ln in stack.filter.log_lines())

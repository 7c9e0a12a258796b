"""Release through the reinjection path: the header, alternate recipients, bad input,
next-hop failures, and exactly-once delivery under concurrent release and expire."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from scanner.quarantine.record import AlreadyReleased, BadSecret, QuarantineError, UnknownMailId
from scanner.quarantine.release import check_address, release
from scanner.quarantine.store import Quarantine
from scanner.reinject.deliver import NextHop
from scanner.testing.sink import Sink

from .util import REPO, sample, store


def run_release(q: Quarantine, hop: NextHop, mail_id: str, **kw: object) -> list[str]:
    kw.setdefault("recipients", None)
    kw.setdefault("requested_by", "tester")
    return asyncio.run(release(q, hop, mail_id, **kw))  # type: ignore[arg-type]


def test_release_to_original_recipients(quarantine: Quarantine, hop: NextHop, sink: Sink):
    raw = sample("held", b"caf\xc3\xa9\r\n.leading dot\r\n")
    rec = store(quarantine, raw, recipients=["bob@example.test", "carol@example.test"])
    replies = run_release(quarantine, hop, rec.mail_id, requested_by="admin@example.test")
    assert replies == [f"250 2.0.0 from MTA(smtp:[127.0.0.1]:{sink.port}): 250 2.0.0 Ok: "
                       "queued as SINK1"] * 2
    got = sink.wait_for(1)
    assert len(got) == 1
    header, _, rest = got[0].data.partition(b"\r\n")
    assert rest == raw  # the message itself is unchanged
    assert header.startswith(b"X-Quarantine-Released: by admin@example.test at ")
    assert header.endswith(f", id={rec.mail_id}".encode())
    assert got[0].sender == "spam@example.org"
    assert got[0].recipients == ["bob@example.test", "carol@example.test"]
    assert ("BODY", "8BITMIME") in got[0].mail_params
    assert got[0].xforward.get("ADDR") == "192.0.2.7"
    after = quarantine.get(rec.mail_id)
    assert after.state == "released" and after.released_by == "admin@example.test"
    assert after.released_to == ["bob@example.test", "carol@example.test"]
    assert after.release_result == replies


def test_release_to_other_recipients(quarantine: Quarantine, hop: NextHop, sink: Sink):
    rec = store(quarantine)
    run_release(quarantine, hop, rec.mail_id, recipients=["<admin@example.test>",
                                                          "x@[192.0.2.1]"])
    assert sink.wait_for(1)[0].recipients == ["admin@example.test", "x@[192.0.2.1]"]
    assert quarantine.get(rec.mail_id).released_to == ["admin@example.test", "x@[192.0.2.1]"]


@pytest.mark.parametrize("bad", ["", "bob", "@example.test", "bob@", "a b@example.test",
                                 "bob@exa mple.test", "bob@-example.test", "bob@example..test",
                                 "bob@example.test\r\nRCPT TO:<evil@example.test>",
                                 "<bob@example.test", "x" * 65 + "@example.test"])
def test_invalid_addresses_deliver_nothing(quarantine: Quarantine, hop: NextHop, sink: Sink,
                                           bad: str):
    rec = store(quarantine)
    with pytest.raises(QuarantineError, match="not a valid recipient address"):
        run_release(quarantine, hop, rec.mail_id, recipients=["ok@example.test", bad])
    assert sink.received == []
    assert quarantine.get(rec.mail_id).state == "held"


def test_valid_address_forms():
    assert check_address("<bob@example.test>") == "bob@example.test"
    assert check_address('"odd name"@example.test') == '"odd name"@example.test'
    assert check_address("postmaster@localhost") == "postmaster@localhost"
    assert check_address("jörg@bücher.example") == "jörg@bücher.example"


def test_who_releases_may_be_any_bytes(quarantine: Quarantine, hop: NextHop, sink: Sink):
    """--by and AM.PDP's requested_by come from outside (a web form in Latin-1, a
    decoded %0a): bytes that are not UTF-8 used to make the index write fail (the
    release an internal error, every time); control characters and such bytes are
    kept as \\xNN in the header and the index."""
    rec = store(quarantine)
    replies = run_release(quarantine, hop, rec.mail_id, requested_by="J\udcf6rg\r\nBcc: x")
    assert replies[0].startswith("250"), replies
    header = sink.wait_for(1)[0].data.split(b"\r\n", 1)[0]
    assert header.startswith(b"X-Quarantine-Released: by J\\xf6rg\\x0d\\x0aBcc: x at ")
    assert quarantine.get(rec.mail_id).released_by == "J\\xf6rg\\x0d\\x0aBcc: x"


def test_second_release_is_refused_unless_forced(quarantine: Quarantine, hop: NextHop,
                                                 sink: Sink):
    rec = store(quarantine)
    run_release(quarantine, hop, rec.mail_id)
    with pytest.raises(AlreadyReleased, match="already released at .* by tester to "
                                              "bob@example.test"):
        run_release(quarantine, hop, rec.mail_id)
    assert len(sink.received) == 1
    run_release(quarantine, hop, rec.mail_id, force=True)
    assert len(sink.wait_for(2)) == 2


def test_secret_id(quarantine: Quarantine, hop: NextHop, sink: Sink):
    rec = store(quarantine)
    with pytest.raises(BadSecret):
        run_release(quarantine, hop, rec.mail_id, secret_id="AAAAAAAAAAAA")
    assert sink.received == []
    with pytest.raises(BadSecret):  # bytes that are not UTF-8 (%ff over AM.PDP): no crash
        run_release(quarantine, hop, rec.mail_id, secret_id="\udcff" * 12)
    run_release(quarantine, hop, rec.mail_id, secret_id=rec.secret_id)
    assert len(sink.wait_for(1)) == 1


def test_unknown_id_and_missing_row(quarantine: Quarantine, hop: NextHop, sink: Sink):
    with pytest.raises(UnknownMailId, match="unknown mail_id ZZZZZZZZZZZZ"):
        run_release(quarantine, hop, "ZZZZZZZZZZZZ")
    rec = store(quarantine)
    quarantine.index.delete(rec.mail_id)
    with pytest.raises(UnknownMailId, match="exists without one"):
        run_release(quarantine, hop, rec.mail_id)
    assert sink.received == []


def test_corrupt_or_missing_file_is_not_released(quarantine: Quarantine, hop: NextHop,
                                                 sink: Sink, qdir: Path):
    rec = store(quarantine)
    path = qdir / rec.relative_path
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(QuarantineError, match=f"{path} is corrupt"):
        run_release(quarantine, hop, rec.mail_id)
    after = quarantine.get(rec.mail_id)
    assert after.state == "held" and "corrupt" in after.release_result[0]
    path.unlink()
    with pytest.raises(QuarantineError, match="is missing"):
        run_release(quarantine, hop, rec.mail_id)
    assert sink.received == []


def test_an_empty_file_is_corrupt_not_an_empty_message(quarantine: Quarantine, hop: NextHop,
                                                       sink: Sink, qdir: Path):
    """A quarantine file cut to 0 bytes (a file system repaired after a crash, a
    careless '> file'): Python's gzip reads it as an empty message, so the release sent
    nothing but the release header and the message counted as released. It is a
    corrupt file: nothing is sent, the row stays held, 'show --raw' fails too."""
    rec = store(quarantine)
    path = qdir / rec.relative_path
    path.write_bytes(b"")
    with pytest.raises(QuarantineError, match=f"{path} is corrupt: it is empty"):
        run_release(quarantine, hop, rec.mail_id)
    with pytest.raises(QuarantineError, match="is corrupt"):
        quarantine.read(rec.mail_id)
    assert sink.received == []
    assert quarantine.get(rec.mail_id).state == "held"


def test_next_hop_down_then_up(quarantine: Quarantine, dead_hop: NextHop, hop: NextHop,
                               sink: Sink):
    rec = store(quarantine)
    replies = run_release(quarantine, dead_hop, rec.mail_id)
    assert replies[0].startswith(f"451 4.4.1 Next hop {dead_hop.label} failed")
    after = quarantine.get(rec.mail_id)
    assert after.state == "held" and after.release_result == replies
    run_release(quarantine, hop, rec.mail_id)
    assert len(sink.wait_for(1)) == 1


def test_next_hop_refuses_some_recipients(quarantine: Quarantine, hop: NextHop, sink: Sink):
    sink.behaviour.rcpt_reply = lambda r: "550 5.1.1 No such user" if "gone" in r else "250 Ok"
    rec = store(quarantine, recipients=["gone@example.test", "bob@example.test"])
    replies = run_release(quarantine, hop, rec.mail_id)
    assert replies[0].startswith("550 5.1.1") and replies[1].startswith("250")
    after = quarantine.get(rec.mail_id)
    assert after.state == "released" and after.released_to == ["bob@example.test"]
    only_gone = store(quarantine, recipients=["gone@example.test"])
    run_release(quarantine, hop, only_gone.mail_id)
    assert quarantine.get(only_gone.mail_id).state == "held"


def test_unknown_outcome_is_not_released_again(quarantine: Quarantine, sink: Sink):
    """The connection breaks after the end of data: the next hop may have the message."""
    sink.behaviour.delay = 2.0
    impatient = NextHop("127.0.0.1", sink.port, False, 2.0, 0.5, "scanner.test", True)
    rec = store(quarantine)
    replies = run_release(quarantine, impatient, rec.mail_id)
    assert replies[0].startswith("451")
    assert quarantine.get(rec.mail_id).state == "releasing"
    with pytest.raises(AlreadyReleased, match="did not finish .*may have it already"):
        run_release(quarantine, impatient, rec.mail_id)
    with pytest.raises(QuarantineError, match="did not finish"):
        quarantine.delete(rec.mail_id)


def test_delivered_but_the_index_cannot_record_it(quarantine: Quarantine, hop: NextHop,
                                                  sink: Sink, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture):
    """The next hop took the message, then the index could not be written (disk full,
    database gone): the release is reported as delivered (not "not released", which
    invites a second try), the error is logged, and the row stays 'releasing' so a
    second release is refused instead of sending the message twice."""
    rec = store(quarantine)

    def full(*_a: object, **_k: object) -> bool:
        raise QuarantineError(f"quarantine index {quarantine.index.location}: database or "
                              "disk is full")
    monkeypatch.setattr(type(quarantine.index), "finish", full)
    replies = run_release(quarantine, hop, rec.mail_id)
    assert replies[0].startswith("250 2.0.0 from MTA"), replies
    assert "could not record it: quarantine index" in caplog.text
    assert "database or disk is full" in caplog.text
    monkeypatch.undo()
    assert quarantine.get(rec.mail_id).state == "releasing"
    with pytest.raises(AlreadyReleased, match="being released"):
        run_release(quarantine, hop, rec.mail_id)
    assert len(sink.wait_for(1)) == 1


CHILD = textwrap.dedent("""
    import asyncio, contextlib, sys, time
    from scanner.quarantine.config import QuarantineConfig
    from scanner.quarantine.record import QuarantineError
    from scanner.quarantine.release import release
    from scanner.quarantine.store import Quarantine
    from scanner.reinject.deliver import NextHop
    directory, port, mail_id, start, nolock = sys.argv[1:]
    if nolock == "1":  # like two hosts sharing one index: only the index decides
        Quarantine.lock = lambda self, rec, what: contextlib.nullcontext()
    q = Quarantine(QuarantineConfig(directory=directory))
    hop = NextHop("127.0.0.1", int(port), False, 2.0, 5.0, "scanner.test", True)
    while time.time() < float(start):
        time.sleep(0.001)
    try:
        print("OK", asyncio.run(release(q, hop, mail_id, recipients=None,
                                        requested_by="child")))
    except QuarantineError as exc:
        print("REFUSED", type(exc).__name__, exc)
""")


@pytest.mark.parametrize(("delay", "nolock"), [(0.0, "0"), (0.5, "0"), (0.5, "1")])
def test_two_processes_release_at_once_one_delivery(quarantine: Quarantine, sink: Sink,
                                                    qdir: Path, delay: float, nolock: str):
    sink.behaviour.delay = delay
    rec = store(quarantine)
    start = str(time.time() + 1.5)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(qdir), str(sink.port),
                               rec.mail_id, start, nolock], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = sorted(p.communicate(timeout=30)[0] for p in procs)
    assert [o.split()[0] for o in outs] == ["OK", "REFUSED"], outs
    assert "AlreadyReleased" in outs[1]
    time.sleep(0.3)
    assert len(sink.received) == 1
    assert quarantine.get(rec.mail_id).state == "released"


def test_expire_waits_for_a_running_release(quarantine: Quarantine, hop: NextHop, sink: Sink,
                                            qdir: Path):
    sink.behaviour.delay = 1.0
    rec = store(quarantine)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(
        run_release(quarantine, hop, rec.mail_id)))
    thread.start()
    deadline = time.monotonic() + 5
    while quarantine.get(rec.mail_id).state != "releasing":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert quarantine.expire(0) == 0  # kept: being released
    with pytest.raises(AlreadyReleased, match="being released"):
        quarantine.delete(rec.mail_id)
    thread.join(10)
    assert result and str(result[0]).count("250") == 2
    assert (qdir / rec.relative_path).exists()
    assert quarantine.expire(0) == 1
    assert not (qdir / rec.relative_path).exists()
    assert len(sink.received) == 1


def test_release_after_expire_finds_nothing(quarantine: Quarantine, hop: NextHop, sink: Sink):
    rec = store(quarantine)
    assert quarantine.expire(0) == 1
    with pytest.raises(UnknownMailId):
        run_release(quarantine, hop, rec.mail_id)
    assert sink.received == []


def test_release_of_smtputf8_mail_keeps_its_utf8_envelope(quarantine: Quarantine, hop: NextHop,
                                                          sink: Sink):
    """A message quarantined with UTF-8 envelope addresses goes out with SMTPUTF8 and
    its addresses byte for byte (to the original recipient and to one given in UTF-8)."""
    raw = sample("eai", "Grüße\r\n".encode())
    rec = store(quarantine, raw, sender="jürgen@пример.рф", recipients=["δοκιμή@example.test"])
    assert quarantine.get(rec.mail_id).recipients == ["δοκιμή@example.test"]
    run_release(quarantine, hop, rec.mail_id, recipients=["δοκιμή@example.test", "ü@bücher.test"])
    [got] = sink.wait_for(1)
    assert got.sender == "jürgen@пример.рф"
    assert got.recipients == ["δοκιμή@example.test", "ü@bücher.test"]
    assert ("SMTPUTF8", None) in got.mail_params

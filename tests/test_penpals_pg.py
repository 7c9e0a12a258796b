"""Pen pals in PostgreSQL: one memory for several filter hosts, against the private
PostgreSQL server of the suite (``pg_server``); skipped without psycopg or the server
binaries. The SQLite store runs the same contract test."""

from __future__ import annotations

import asyncio
import random
import signal
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner import config as cfgmod
from scanner.checks.base import CheckContext
from scanner.checks.penpals import PenPals, PenPalsSettings
from scanner.errors import ConfigError
from scanner.penpals_pg import RETRY_AFTER, PostgresStore
from scanner.penpals_store import Found, PenPalsStore, PenPalsUnavailable, Store
from scanner.task import Destiny, Verdict
from scanner.testing.filter import FilterProcess
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from scanner.testing.tasks import task_from_bytes
from tests.pgserver import PgServer
from tests.test_bounce_killer import _read
from tests.test_dburl import _scanner
from tests.test_penpals import _msg, two_listener_config

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")

DAY = 86400.0
ALICE, BOB = "alice@example.test", "bob@example.org"


def _fresh(url: str) -> str:
    """``url`` with the pen pals tables dropped (each test starts empty)."""
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS penpals_sent, penpals_message_ids")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        made: Store = PenPalsStore(str(tmp_path / "penpals.sqlite"), 30 * DAY)
    else:
        made = PostgresStore(_fresh(request.getfixturevalue("pg_url")), 30 * DAY, 2.0)
    yield made
    made.close()


def test_both_back_ends_remember_and_forget_alike(store: Store) -> None:
    store.record(ALICE, [BOB], "m1@example.test", now=1000.0)
    store.record(ALICE, [BOB, BOB], "m2@example.test", now=2000.0)
    found = store.lookup(ALICE, BOB, ["m1@example.test", "x@y"], 3000.0)
    assert (found.wrote_at, found.replied_at) == (2000.0, 1000.0)
    assert store.lookup(ALICE, BOB, [], 3000.0).replied_at is None
    assert store.lookup("carol@example.test", BOB, ["m1@example.test"], 3000.0).replied_at \
        is None
    assert store.lookup(ALICE, "eve@example.net", [], 3000.0).wrote_at is None
    late = 2000.0 + 31 * DAY
    assert store.lookup(ALICE, BOB, ["m2@example.test"], late).wrote_at is None
    assert store.purge(late) == 3
    assert store.purge(late) == 0


def test_a_second_host_finds_what_the_first_recorded(pg_url: str) -> None:
    host_a = PostgresStore(_fresh(pg_url), 30 * DAY, 2.0)
    host_b = PostgresStore(pg_url, 30 * DAY, 2.0)
    host_a.record(ALICE, [BOB], "q1@example.test")
    assert host_b.lookup(ALICE, BOB, ["q1@example.test"]).replied_at is not None
    # a host whose clock is behind does not make the correspondence look older
    host_b.record(ALICE, [BOB], None, now=time.time() - DAY)
    assert host_a.lookup(ALICE, BOB, []).wrote_at > time.time() - 60
    host_a.close()
    host_b.close()


def test_writers_and_purges_on_several_hosts_at_once_never_fail(pg_url: str) -> None:
    """Many workers record the same correspondents in different orders while others
    purge: every call succeeds (no deadlock, no unique violation)."""
    _fresh(pg_url)
    remotes = [f"r{i}@example.org" for i in range(6)]
    errors: list[Exception] = []
    start = threading.Barrier(6)

    def writer(seed: int) -> None:
        store = PostgresStore(pg_url, 30 * DAY, 5.0)
        rng = random.Random(seed)
        start.wait()
        try:
            for n in range(60):
                store.record(ALICE, rng.sample(remotes, len(remotes)), f"{seed}.{n}@x")
        except PenPalsUnavailable as exc:
            errors.append(exc)
        store.close()

    def purger() -> None:
        store = PostgresStore(pg_url, 30 * DAY, 5.0)
        start.wait()
        try:
            for _ in range(60):
                store.purge(time.time() + 31 * DAY)  # every row is old: all go
        except PenPalsUnavailable as exc:
            errors.append(exc)
        store.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=purger) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_stopped_database_fails_at_once_and_is_tried_again_later(
        pg_server: PgServer) -> None:
    now = [0.0]
    store = PostgresStore(_fresh(pg_server.url), 30 * DAY, 2.0, clock=lambda: now[0])
    store.record(ALICE, [BOB], "q1@example.test")  # connected
    pg_server.stop()
    try:
        began = time.monotonic()
        with pytest.raises(PenPalsUnavailable):
            store.lookup(ALICE, BOB, ["q1@example.test"])
        with pytest.raises(PenPalsUnavailable, match="next attempt in 10 s"):
            store.record(ALICE, [BOB], None)
        assert time.monotonic() - began < 2.0
    finally:
        pg_server.start()
    with pytest.raises(PenPalsUnavailable):  # not yet: RETRY_AFTER has not passed
        store.lookup(ALICE, BOB, [])
    now[0] += RETRY_AFTER
    assert store.lookup(ALICE, BOB, ["q1@example.test"]).replied_at is not None
    store.close()


def test_a_user_without_create_uses_tables_made_for_it(pg_url: str) -> None:
    """PostgreSQL checks the CREATE privilege before it finds a table exists: a user
    with only SELECT, INSERT, UPDATE and DELETE failed on every connection."""
    PostgresStore(_fresh(pg_url), 30 * DAY, 2.0).probe()  # an administrator made them
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("DROP ROLE IF EXISTS penpals_user")
        con.execute("CREATE ROLE penpals_user LOGIN")
        con.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        con.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON penpals_sent, "
                    "penpals_message_ids TO penpals_user")
    try:
        store = PostgresStore(pg_url.replace("scanner@", "penpals_user@"), 30 * DAY, 2.0)
        store.record(ALICE, [BOB], "q1@example.test")
        assert store.lookup(ALICE, BOB, ["q1@example.test"]).replied_at is not None
        assert store.purge(time.time() + 31 * DAY) == 2
        store.close()
    finally:
        with psycopg.connect(pg_url, autocommit=True) as con:
            con.execute("DROP OWNED BY penpals_user")
            con.execute("DROP ROLE penpals_user")


def test_a_nul_in_a_message_id_or_address_does_not_switch_the_memory_off(
        pg_url: str) -> None:
    """PostgreSQL text cannot hold NUL (SQLite's can): psycopg refused such a value as
    a database error, and the store left the database alone for RETRY_AFTER seconds, so
    one crafted References field turned the pen pals off for everyone's mail."""
    store = PostgresStore(_fresh(pg_url), 30 * DAY, 2.0)
    store.record(ALICE, [BOB, "x\x00y@example.org"], "q\x00@example.test")
    store.record("a\x00b@example.test", [BOB], "q2@example.test")
    assert store.lookup(ALICE, BOB, ["evil\x00@x", "q1@x"]).wrote_at is not None
    assert store.lookup(ALICE, "x\x00y@example.org", ["q\x00@example.test"]) == Found()
    store.record(ALICE, [BOB], "q1@example.test")
    assert store.lookup(ALICE, BOB, ["q1@example.test"]).replied_at is not None
    store.close()


def test_an_address_too_long_for_an_index_does_not_switch_the_memory_off(
        pg_url: str) -> None:
    """A key beyond PostgreSQL's B-tree row limit (about 2.7 kB) failed the recording
    as a database error, which left the database alone for RETRY_AFTER seconds."""
    store = PostgresStore(_fresh(pg_url), 30 * DAY, 2.0)
    rng = random.Random(1)
    huge = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=3000))
    store.record(ALICE, [f"{huge}@example.org", BOB], f"{huge}@example.test")
    assert store.lookup(ALICE, f"{huge}@example.org", [f"{huge}@example.test"]) == Found()
    store.record(ALICE, [BOB], "q1@example.test")
    assert store.lookup(ALICE, BOB, ["q1@example.test"]).replied_at is not None
    store.close()


def test_a_locked_table_costs_at_most_the_timeout(pg_url: str) -> None:
    store = PostgresStore(_fresh(pg_url), 30 * DAY, 0.5)
    store.probe()  # the tables exist
    with psycopg.connect(pg_url) as holder:
        holder.execute("LOCK TABLE penpals_sent IN ACCESS EXCLUSIVE MODE")
        for call in (lambda: store.lookup(ALICE, BOB, []),
                     lambda: store.record(ALICE, [BOB], None)):
            began = time.monotonic()
            store._down_until = 0.0  # as after RETRY_AFTER: each call really waits
            with pytest.raises(PenPalsUnavailable, match="statement timeout"):
                call()
            assert 0.4 < time.monotonic() - began < 1.5


def _check(database: str, timeout: float = 2.0) -> PenPals:
    async def no_cpu(*_a: object) -> None:
        return None
    settings = PenPalsSettings(database=database, timeout=timeout)
    return PenPals(settings, CheckContext(config=cfgmod.load(None), run_cpu=no_cpu))


def _flush(check: PenPals) -> None:
    """Wait until the calls queued in the check's store thread are done."""
    assert check._thread is not None
    done = threading.Event()
    assert check._thread.submit(done.set)
    assert done.wait(10.0)


def test_the_check_waits_for_a_locked_database_no_longer_than_its_timeout(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    check = _check(_fresh(pg_url), timeout=0.5)
    reply = _msg("r1@example.org", "In-Reply-To: <q1@example.test>\r\n")

    async def scenario() -> tuple[list, float, float]:
        with task_from_bytes(_msg("q1@example.test"), sender=ALICE, recipients=(BOB,),
                             policy_bank="ORIGINATING") as out:
            out.verdicts = {BOB: Verdict("CLEAN", Destiny.PASS, 0.0)}
            check.after_delivery(out, [BOB])
            _flush(check)
            with psycopg.connect(pg_url) as holder:
                holder.execute("LOCK TABLE penpals_sent IN ACCESS EXCLUSIVE MODE")
                began = time.monotonic()
                check.after_delivery(out, [BOB])  # queued: returns at once
                queued = time.monotonic() - began
                with task_from_bytes(reply, sender=BOB, recipients=(ALICE,)) as task:
                    began = time.monotonic()
                    hits = list(await check.run(task))
                    waited = time.monotonic() - began
        return hits, queued, waited

    hits, queued, waited = asyncio.run(scenario())
    assert hits == [] and queued < 0.05 and 0.4 < waited < 1.0
    assert "no pen pals memory meanwhile (mail is not held up)" in caplog.text
    check.close()


def test_a_server_that_stops_answering_costs_one_timeout_then_none(
        pg_server: PgServer, caplog: pytest.LogCaptureFixture) -> None:
    """statement_timeout needs a live server: with the server frozen, the first
    look-up waits its timeout, the next ones fail at once while that call hangs."""
    check = _check(_fresh(pg_server.url), timeout=0.5)
    reply = _msg("r1@example.org", "In-Reply-To: <q1@example.test>\r\n")

    async def look() -> tuple[list, float]:
        with task_from_bytes(reply, sender=BOB, recipients=(ALICE,)) as task:
            began = time.monotonic()
            hits = list(await check.run(task))
            return hits, time.monotonic() - began

    async def scenario() -> list[tuple[list, float]]:
        await look()  # connected
        try:
            pg_server.signal_all(signal.SIGSTOP)
            found = [await look(), await look(), await look()]
        finally:
            pg_server.signal_all(signal.SIGCONT)
        _flush(check)  # the hung call returns once the server goes on
        return found

    (first, waited), *rest = asyncio.run(scenario())
    assert first == [] and 0.4 < waited < 1.0
    assert all(hits == [] and took < 0.1 for hits, took in rest), rest
    assert "no pen pals memory meanwhile" in caplog.text
    check.close()


def test_the_check_finds_a_reply_recorded_by_another_check(pg_url: str) -> None:
    """Two hosts' checks: the reply scanned by B is one to the message A recorded, and
    A's bounce is rescued by B."""
    host_a, host_b = _check(_fresh(pg_url)), _check(pg_url)

    async def scenario() -> tuple[list, list]:
        with task_from_bytes(_msg("a9b8c7d6-minutes@example.net"), sender=ALICE,
                             recipients=(BOB,), policy_bank="ORIGINATING") as out:
            out.verdicts = {BOB: Verdict("CLEAN", Destiny.PASS, 0.0)}
            host_a.after_delivery(out, [BOB])
            _flush(host_a)
        reply = _msg("r1@example.org", "In-Reply-To: <a9b8c7d6-minutes@example.net>\r\n")
        with task_from_bytes(reply, sender=BOB, recipients=(ALICE,)) as task:
            replied = [(h.symbol, h.recipient) for h in await host_b.run(task)]
        with task_from_bytes(_read("ham-dsn-bounce.eml"), sender="",
                             recipients=(ALICE, "carol@example.test")) as task:
            bounced = [(h.symbol, h.recipient) for h in await host_b.run(task)]
        return replied, bounced

    replied, bounced = asyncio.run(scenario())
    assert replied == [("PENPALS_REPLY", ALICE)]
    assert bounced == [("BOUNCE_KILLED", "carol@example.test")]
    host_a.close()
    host_b.close()


def test_a_timeout_the_check_deadline_would_cut_short_is_refused(pg_url: str,
                                                                 tmp_path: Path) -> None:
    """Waiting for the database past checks.timeout would make PENPALS_FAIL (a 451 by
    default) out of a slow database."""
    (tmp_path / "s.toml").write_text("[checks]\ntimeout = 2.0\n")
    config = cfgmod.load(str(tmp_path / "s.toml"))

    async def no_cpu(*_a: object) -> None:
        return None
    with pytest.raises(ConfigError, match="must be below 'checks.timeout'"):
        PenPals(PenPalsSettings(database=pg_url, timeout=2.0),
                CheckContext(config=config, run_cpu=no_cpu))
    PenPals(PenPalsSettings(database=pg_url, timeout=1.5),
            CheckContext(config=config, run_cpu=no_cpu)).close()


def test_a_postgresql_url_is_shown_without_its_password(tmp_path: Path) -> None:
    given = tmp_path / "given.toml"
    given.write_text('[checks]\nenabled = ["*", "penpals"]\n'
                     '[checks.settings.penpals]\n'
                     f'database = "postgresql://pp:hunter2@/p?host={tmp_path}/none"\n'
                     f'[quarantine]\ndirectory = "{tmp_path}/q"\n')
    show = _scanner("config", "show", str(given))
    assert show.returncode == 0, show.stderr
    assert f'database = "postgresql://pp:***@/p?host={tmp_path}/none"' in show.stdout
    check = _scanner("config", "check", str(given))
    assert f"penpals: postgresql://pp:***@/p?host={tmp_path}/none: " in check.stderr, \
        check.stderr
    assert "hunter2" not in show.stdout + show.stderr + check.stdout + check.stderr


def _wait_for_message_id(url: str, message_id: str, timeout: float = 10.0) -> None:
    """Until a filter's store thread has recorded ``message_id`` (it records after the
    reply to the client, without holding that reply up)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as con:
        while not con.execute("SELECT 1 FROM penpals_message_ids WHERE message_id = %s",
                              (message_id,)).fetchone():
            assert time.monotonic() < deadline, f"{message_id} never recorded"
            time.sleep(0.05)


def _filter(base: Path, sink: Sink, url: str) -> tuple[FilterProcess, int, int]:
    """A filter host on ``url``; BOUNCE_KILLED weighs 100 (a site score), so it shows."""
    inbound, outbound = free_port(), free_port()
    base.mkdir(parents=True, exist_ok=True)
    (base / "site.toml").write_text("[symbols.BOUNCE_KILLED]\nweight = 100.0\n")
    config = two_listener_config(base, sink, inbound, outbound, database=url,
                                 policy="tag2_level = 6.0\nkill_level = 1000.0",
                                 checks=f'score_files = ["{base / "site.toml"}"]')
    return FilterProcess(base, config, [inbound, outbound]), inbound, outbound


def test_two_filter_hosts_share_one_memory(tmp_path: Path, sink: Sink, pg_url: str) -> None:
    """Alice's mail leaves through host A; Bob's reply and the bounce of her message
    arrive at host B, which knows both; a bounce of a message nobody here sent is
    still killed."""
    host_a, _, out_a = _filter(tmp_path / "a", sink, _fresh(pg_url))
    host_b, in_b, _ = _filter(tmp_path / "b", sink, pg_url)
    original = (b"From: alice@example.test\r\nTo: j.doe@example.org\r\nSubject: Minutes\r\n"
                b"Message-ID: <a9b8c7d6-minutes@example.net>\r\n\r\nHi Jo.\r\n")
    reply = _msg("in1@example.org", "In-Reply-To: <a9b8c7d6-minutes@example.net>\r\n")
    with host_a, host_b:
        with smtplib.SMTP("127.0.0.1", out_a, timeout=30) as smtp:
            smtp.sendmail(ALICE, ["j.doe@example.org"], original)
        _wait_for_message_id(pg_url, "a9b8c7d6-minutes@example.net")
        bounce = _read("ham-dsn-bounce.eml").replace(b"reader@example.net", ALICE.encode())
        with smtplib.SMTP("127.0.0.1", in_b, timeout=30) as smtp:
            smtp.sendmail("j.doe@example.org", [ALICE, "carol@example.test"], reply)
            smtp.sendmail("", [ALICE], bounce)
            smtp.sendmail("", [ALICE], _read("dsn-headers-backscatter.eml"))
        got = sink.wait_for(5)
    replies = {tuple(r.recipients): r.data for r in got if r.sender == "j.doe@example.org"}
    assert b"PENPALS_REPLY" in replies[(ALICE,)]
    assert b"PENPALS" not in replies[("carol@example.test",)]
    bounces = [r.data for r in got if r.sender in ("", "<>")]
    ours = next(d for d in bounces if b"a9b8c7d6-minutes" in d)
    forged = next(d for d in bounces if b"forged@bulk-sender" in d)
    assert b"BOUNCE_KILLED" not in ours and b"BOUNCE_KILLED" in forged


def test_a_database_stopped_mid_run_loses_no_mail_and_holds_none_up(
        tmp_path: Path, sink: Sink, pg_server: PgServer) -> None:
    """The documented outcome of database trouble: logged, no bonus and no
    BOUNCE_KILLED, every message delivered at once (250), outgoing mail too."""
    host, inbound, outbound = _filter(tmp_path, sink, _fresh(pg_server.url))
    reply = _msg("in1@example.org", "In-Reply-To: <out1@example.test>\r\n")
    with host:
        with smtplib.SMTP("127.0.0.1", outbound, timeout=30) as smtp:
            smtp.sendmail(ALICE, [BOB], _msg("out1@example.test"))
        _wait_for_message_id(pg_server.url, "out1@example.test")
        pg_server.stop()
        try:
            began = time.monotonic()
            with smtplib.SMTP("127.0.0.1", inbound, timeout=30) as smtp:
                smtp.sendmail(BOB, [ALICE], reply)
                smtp.sendmail("", [ALICE], _read("dsn-headers-backscatter.eml"))
            with smtplib.SMTP("127.0.0.1", outbound, timeout=30) as smtp:
                smtp.sendmail(ALICE, [BOB], _msg("out2@example.test"))
            took = time.monotonic() - began
            got = sink.wait_for(4)
        finally:
            pg_server.start()
    assert took < 10.0  # three messages, each waiting at most timeout (2 s)
    assert len(got) == 4
    inbound_mail = [r.data for r in got if r.recipients == [ALICE]]
    assert len(inbound_mail) == 2
    assert all(b"PENPALS" not in d and b"BOUNCE_KILLED" not in d for d in inbound_mail)
    log = (tmp_path / "scanner.log").read_text()
    assert "no pen pals memory meanwhile (mail is not held up)" in log
    assert "PENPALS_FAIL" not in log

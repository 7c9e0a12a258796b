"""``scanner serve`` with ``[sql_log]``: every message leaves its amavis rows, written
after its answer; a held message's text goes into the quarantine table, where amavis's
own SQL quarantine reader (``scanner quarantine import-amavis --sql``) finds it as it
was held, with its secret_id; a database that is down holds up no mail."""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

import pytest

from scanner.quarantine.amavis_sql import import_sql
from scanner.quarantine.config import QuarantineConfig
from scanner.quarantine.store import Quarantine
from scanner.testing.filter import FilterProcess
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from tests.helpers import filter_config
from tests.pgserver import PgServer
from tests.quarantine.test_ampdp_inet import _ask
from tests.test_dburl import _scanner

from .util import AMAVIS_QUERY, KINDS, as_text, fresh, rows

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def _msg(mid: str, body: str = "hello\r\n") -> bytes:
    return (f"From: Alice <alice@example.org>\r\nTo: bob@example.test\r\n"
            f"Subject: sql log {mid}\r\nMessage-ID: <{mid}@example.org>\r\n\r\n"
            f"{body}").encode()


def _filter(tmp: Path, sink: Sink, url: str) -> tuple[FilterProcess, int]:
    """A filter host logging to ``url``, its AM.PDP release port at ``ampdp_port``
    (the file ``tmp/ampdp_port``)."""
    port, pdp = free_port(), free_port()
    (tmp / "ampdp_port").write_text(str(pdp))
    extra = f"""
[policy]
local_domains = ["example.test"]
spam_destiny = "discard"

[quarantine]
directory = "{tmp / 'quarantine'}"
ampdp_socket = ""
ampdp_inet = "127.0.0.1:{pdp}"

[sql_log]
database = "{url}"
quarantine_text = true
timeout = 2.0
"""
    config = filter_config(port, sink.port, extra=extra, workers=2,
                           log_file=tmp / "scanner.log",
                           server_extra=f'status_file = "{tmp / "status"}"')
    return FilterProcess(tmp, config, [port]), port


def _logged(url: str, count: int, seconds: float = 30.0) -> list[tuple]:
    deadline = time.monotonic() + seconds
    found: list[tuple] = []
    while time.monotonic() < deadline:
        try:
            found = rows(url, AMAVIS_QUERY)
        except Exception as exc:  # the tables are made with the first row
            if "exist" not in str(exc):
                raise
        if len(found) >= count:
            return found
        time.sleep(0.1)
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_clean_and_held_mail_logged_and_held_text_imported_back(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path, sink: Sink) -> None:
    url = fresh(request, kind)
    proc, port = _filter(tmp_path, sink, url)
    spam = _msg("spam1", f"{GTUBE}\r\n")
    with proc:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.sendmail("alice@example.org", ["bob@example.test"], _msg("clean1"))
            s.sendmail("", ["bob@example.test", "carol@example.net"], spam)
        found = sorted(_logged(url, 3), key=lambda r: (r[1], r[11]))  # C before S
        # the front end lists the held message and releases it to bob, as Modoboa does
        held_id, secret = (as_text(v) for v in rows(
            url, "SELECT mail_id, secret_id FROM msgs WHERE quar_type = 'Q'")[0])
        answer = dict(_ask(int((tmp_path / "ampdp_port").read_text()),
                           f"request=release\nmail_id={held_id}\nsecret_id={secret}\n"
                           "quar_type=Q\nrecipient=bob@example.test\n\n"))
        assert answer["setreply"].startswith("250 2.6.0 Ok"), answer
        released = sink.wait_for(2)[1]
        assert released.recipients == ["bob@example.test"] and GTUBE.encode() in released.data
        # marked released for bob, as a front end marks it (msgrcpt.rs R); then carol's
        # copy by the administrator's command
        assert _release_marks(url, held_id) == {"bob@example.test": "R",
                                                "carol@example.net": ""}
        status = _scanner("status", "--config", str(proc.config_path)).stdout
        assert "SQL log: messages written 2, dropped 0" in status, status
    assert [(r[1], r[3], as_text(r[6]), as_text(r[7]), r[12]) for r in found] == [
        ("C", "P", "alice@example.org", "bob@example.test", "Y"),
        ("S", "D", "", "bob@example.test", "Y"),
        ("S", "D", "", "carol@example.net", "N")]
    assert found[0][13].startswith("250 2.0.0") and "discarded" in found[1][13]
    assert [m.data.count(b"clean1@example.org") for m in sink.received] == [1, 0]
    held = Quarantine(QuarantineConfig(directory=str(tmp_path / "quarantine")),
                      hostname="scanner.test")
    spam_id = as_text(found[1][0])
    record = held.get(spam_id)
    meta = rows(url, "SELECT secret_id, quar_type, quar_loc, content, spam_level, "
                     "dsn_sent FROM msgs ORDER BY time_num, mail_id")
    by_content = {r[3]: r for r in meta}
    assert [as_text(v) for v in by_content["S"][:3]] == [record.secret_id, "Q", spam_id]
    assert by_content["S"][4] >= 1000 and by_content["S"][5] == "N"
    assert [as_text(v).strip() for v in by_content["C"][:3]] == ["", "", ""]  # MySQL: " " reads ""
    # amavis's reader takes the held mail back: same id, secret and text
    other = Quarantine(QuarantineConfig(directory=str(tmp_path / "other")),
                       hostname="scanner.test")
    result = import_sql(other, url)
    assert [r.mail_id for r in result.added] == [spam_id], (result.ignored, result.failed)
    copy = other.get(spam_id)
    assert (copy.secret_id, copy.category, copy.held_for) == (
        record.secret_id, "SPAM", ["bob@example.test", "carol@example.net"])
    assert other.read_stored(copy)[1] == held.read_stored(record)[1]
    assert held.read_stored(record)[1].replace(b"\r\n", b"\n").endswith(
        spam.replace(b"\r\n", b"\n"))
    # carol's copy by the administrator's command: marked too (and amavis's reader now
    # leaves the message out, released for every recipient)
    done = _scanner("quarantine", "release", spam_id, "--to", "carol@example.net", "--force",
                    "--config", str(proc.config_path))
    assert done.returncode == 0, done.stderr
    assert _release_marks(url, spam_id) == {"bob@example.test": "R", "carol@example.net": "R"}
    assert len(import_sql(Quarantine(QuarantineConfig(directory=str(tmp_path / "third")),
                                     hostname="scanner.test"), url).ignored) == 1


def _release_marks(url: str, mail_id: str) -> dict[str, str]:
    """Each recipient's msgrcpt.rs (stripped: MySQL reads char(1) ' ' as '')."""
    found = rows(url, "SELECT maddr.email, msgrcpt.rs, msgrcpt.mail_id FROM msgrcpt "
                      "JOIN maddr ON maddr.id = msgrcpt.rid")
    return {as_text(e): as_text(rs).strip() for e, rs, m in found if as_text(m) == mail_id}


def test_a_database_that_is_down_holds_up_no_mail(
        request: pytest.FixtureRequest, pg_server: PgServer, tmp_path: Path,
        sink: Sink) -> None:
    url = fresh(request, "postgresql")
    proc, port = _filter(tmp_path, sink, url)
    pg_server.stop()
    try:
        with proc:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
                for n in range(3):
                    s.sendmail("alice@example.org", ["bob@example.test"], _msg(f"down{n}"))
            assert len(sink.received) == 3  # delivered at once, each answered 250
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                    "SQL log: cannot write to" in line for line in proc.log_lines()):
                time.sleep(0.1)
            assert any("SQL log: cannot write to" in line for line in proc.log_lines())
            pg_server.start()
            found = _logged(url, 3, 40)  # tried again every 10 s
    finally:
        pg_server.start() if not _running(pg_server) else None
    assert sorted(r[8] for r in found) == [f"sql log down{n}" for n in range(3)]


def _running(server: PgServer) -> bool:
    try:
        rows(server.url, "SELECT 1")
    except Exception:
        return False
    return True

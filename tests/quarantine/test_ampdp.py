"""The AM.PDP release socket: framing, replies, permissions, and stale sockets."""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner import config as cfgmod
from scanner.quarantine import ampdp as ampdp_module
from scanner.quarantine.ampdp import bind_ampdp_socket
from scanner.quarantine.ampdp_proto import decode, encode_field, format_attr, parse_line
from scanner.quarantine.record import QuarantineError
from scanner.testing.sink import Sink

from .util import ampdp, config_text, store


def test_encoding_round_trip():
    for text in ["plain", "with space", "100% sure", "a\r\nb\x00c", "caf\u00e9 \u2603", ""]:
        assert decode(encode_field(text).encode()) == text
    assert format_attr("setreply", "250", "2.6.0", "Ok, id=rel-x") == \
        b"setreply=250 2.6.0 Ok,%20id=rel-x\r\n"
    assert parse_line(b"recipient=%3cbob@example.test%3e\r\n") == (
        "recipient", "<bob@example.test>")


def _values(answer: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in answer if k == name]


def test_release_round_trip(server, sink: Sink):
    config, q, path = server()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    rec = store(q, recipients=["bob@example.test", "carol@example.test"])
    [answer] = ampdp(path, [("request", "release"), ("mail_id", rec.mail_id),
                            ("secret_id", rec.secret_id), ("quar_type", "Z"),
                            ("mail_file", rec.relative_path),
                            ("requested_by", "<boss@example.test>")])
    assert answer[0] == ("version_server", "2")
    replies = _values(answer, "setreply")
    assert replies == [f"250 2.6.0 Ok, id=rel-{rec.mail_id}, from MTA(smtp:[127.0.0.1]:"
                       f"{sink.port}): 250 2.0.0 Ok: queued as SINK1"] * 2
    assert _values(answer, "exit_code") == ["0"] and _values(answer, "log_id")
    got = sink.wait_for(1)[0]
    assert got.recipients == ["bob@example.test", "carol@example.test"]
    assert got.data.startswith(b"X-Quarantine-Released: by <boss@example.test> (AM.PDP, uid ")


def test_release_to_a_utf8_recipient_named_in_the_request(server, sink: Sink):
    """amavisd-release's recipient=, %XX-encoded UTF-8 (RFC 6531 addresses), reaches
    the next hop as that UTF-8 address, with SMTPUTF8."""
    config, q, path = server()
    rec = store(q, sender="jürgen@пример.рф", recipients=["δοκιμή@example.test"])
    [answer] = ampdp(path, [("request", "release"), ("mail_id", rec.mail_id),
                            ("secret_id", rec.secret_id), ("quar_type", "Z"),
                            ("mail_file", rec.relative_path),
                            ("recipient", "<ü@bücher.test>"),
                            ("requested_by", "<boss@example.test>")])
    assert _values(answer, "exit_code") == ["0"], answer
    got = sink.wait_for(1)[0]
    assert (got.sender, got.recipients) == ("jürgen@пример.рф", ["ü@bücher.test"])
    assert ("SMTPUTF8", None) in got.mail_params


def test_several_requests_on_one_connection(server, sink: Sink):
    config, q, path = server()
    a, b = store(q), store(q)
    answers = ampdp(path,
                    [("request", "release"), ("mail_id", a.mail_id),
                     ("recipient", "<x@example.test>"), ("recipient", "y@example.test"),
                     ("sender", "<>")],
                    [("request", "release"), ("mail_id", a.mail_id)],
                    [("request", "release"), ("mail_id", "unknownABCDE")],
                    [("request", "release"), ("mail_id", b.mail_id),
                     ("secret_id", "wrongSECRET0")],
                    [("request", "release"), ("mail_id", b.mail_id),
                     ("recipient", "bad address")],
                    [("request", "report"), ("mail_id", b.mail_id)],
                    [("request", "AM.PDP"), ("mail_file", "/tmp/x")])
    first = _values(answers[0], "setreply")
    assert len(first) == 2 and all(r.startswith("250 2.6.0 Ok") for r in first)
    assert sink.wait_for(1)[0].recipients == ["x@example.test", "y@example.test"]
    assert sink.received[0].sender in ("", "<>")  # the null sender
    expect = [("550 5.7.0", "already released", "69"),
              ("550 5.7.0", "unknown mail_id unknownABCDE", "69"),
              ("550 5.7.1", "wrong secret_id", "69"),
              ("550 5.3.0", "'bad address' is not a valid recipient", "69"),
              ("554 5.5.1", "unsupported request 'report'", "69"),
              ("451 4.5.0", "no scanner runs behind this socket", "75")]
    for answer, (code, text, exit_code) in zip(answers[1:], expect, strict=True):
        [reply] = _values(answer, "setreply")
        assert reply.startswith(code) and text in reply, reply
        assert _values(answer, "exit_code") == [exit_code]
    assert len(sink.received) == 1


def test_mail_file_names_the_message(server, sink: Sink):
    """amavisd-release sends a whole file name as mail_id when the id starts with '_'."""
    config, q, path = server()
    rec = store(q, mail_id="_startsOdd9-")
    [answer] = ampdp(path, [("request", "requeue"), ("mail_id", "spam-_startsOdd9-"),
                            ("mail_file", rec.relative_path)])
    assert _values(answer, "setreply")[0].startswith("250 2.6.0 Ok, id=rel-_startsOdd9-")
    assert len(sink.wait_for(1)) == 1


def test_require_secret(server, sink: Sink):
    config, q, path = server("require_secret = true\n")
    rec = store(q)
    [answer] = ampdp(path, [("request", "release"), ("mail_id", rec.mail_id)])
    assert "a secret_id is required" in _values(answer, "setreply")[0]
    [answer] = ampdp(path, [("request", "release"), ("mail_id", rec.mail_id),
                            ("secret_id", rec.secret_id)])
    assert _values(answer, "exit_code") == ["0"]


def test_broken_framing_is_answered_then_closed(server):
    config, q, path = server()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(b"no equals sign here\r\n\r\n")
        data = s.makefile("rb").read()
    assert b"setreply=554 5.5.2 not%20an%20attribute%20line" in data


CLIENT = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sys.argv[1])
    except OSError as exc:
        print("CONNECT", exc.strerror); sys.exit()
    s.sendall(b"request=release\\r\\nmail_id=AAAAAAAAAAAA\\r\\n\\r\\n")
    s.shutdown(socket.SHUT_WR)
    print(s.makefile("rb").read().decode())
""")


def _as_nobody(path: Path) -> str:
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    out = subprocess.run([python, "-c", CLIENT, str(path)], capture_output=True,
                         text=True, user=65534, group=65534, timeout=20, cwd="/")
    return out.stdout + out.stderr


@pytest.fixture
def public_dir():
    """A directory others can traverse (pytest's tmp_path is mode 700)."""
    path = Path(tempfile.mkdtemp(prefix="scanner-ampdp-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    for p in path.iterdir():
        p.unlink()
    path.rmdir()


def test_peer_credentials_and_socket_mode(server, public_dir: Path):
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    _, _, path = server("socket_mode = 0o660\n", sock_dir=public_dir)
    assert "CONNECT Permission denied" in _as_nobody(path)  # mode 660 root:root
    path.chmod(0o666)
    assert "permission%20denied:%20uid%2065534" in _as_nobody(path)
    (public_dir / "scanner.sock").unlink()
    _, _, path = server("socket_mode = 0o666\nallowed_uids = [0, 65534]\n",
                        sock_dir=public_dir)
    assert "unknown%20mail_id%20AAAAAAAAAAAA" in _as_nobody(path)


def _as_user(path: Path, uid: int, gid: int, groups: list[int]) -> str:
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    out = subprocess.run([python, "-c", CLIENT, str(path)], capture_output=True, text=True,
                         user=uid, group=gid, extra_groups=groups, timeout=20, cwd="/")
    return out.stdout + out.stderr


@pytest.fixture
def group_member() -> Iterator[tuple[int, int, int]]:
    """(uid, primary gid, gid of a group it belongs to through /etc/group only): a user
    and a group made for this test (unique names), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to add a user and a group")
    tag = secrets.token_hex(4)
    group, user = f"scang{tag}", f"scanu{tag}"
    subprocess.run(["groupadd", group], check=True, capture_output=True, timeout=30)
    try:
        subprocess.run(["useradd", "-M", "-N", "-g", "nogroup", "-G", group, "-s",
                        "/usr/sbin/nologin", user], check=True, capture_output=True,
                       timeout=30)
        try:
            yield pwd.getpwnam(user).pw_uid, 65534, grp.getgrnam(group).gr_gid
        finally:
            subprocess.run(["userdel", user], check=True, capture_output=True, timeout=30)
    finally:
        subprocess.run(["groupdel", group], check=True, capture_output=True, timeout=30)


def _unused_uid() -> int:
    uid = 54321
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def test_allowed_gids_admits_members_of_the_group_not_only_its_primary_gid(
        server, public_dir: Path, group_member):
    """allowed_gids is documented as the groups "whose members' processes may use" the
    socket, but only the peer process's primary gid was compared: a user who is a member
    of the allowed group (an admin added to an amavis group) was refused. Users that are
    not members, and a uid without a user entry, stay refused."""
    uid, primary, member_of = group_member
    _, _, path = server(f"socket_mode = 0o666\nallowed_uids = [0]\n"
                        f"allowed_gids = [{member_of}]\n", sock_dir=public_dir)
    assert "unknown%20mail_id%20AAAAAAAAAAAA" in _as_user(path, uid, primary, [member_of])
    assert "permission%20denied:%20uid%2065534" in _as_nobody(path)
    stranger = _unused_uid()
    assert f"permission%20denied:%20uid%20{stranger}%20" in _as_user(path, stranger, primary,
                                                                    [])


def test_allowed_gids_are_the_groups_the_peer_process_has_not_what_etc_group_says(
        server, public_dir: Path, group_member):
    """The peer's groups were read from the group database for its uid, not taken from
    the process: a process of a member that dropped the group (a daemon started without
    initgroups, or before the user was added) got in, and a process that has the group
    (newgrp, a service given SupplementaryGroups=) while /etc/group does not list its
    user was refused. The kernel's SO_PEERGROUPS says which groups the peer has."""
    uid, primary, member_of = group_member
    _, _, path = server(f"socket_mode = 0o666\nallowed_uids = [0]\n"
                        f"allowed_gids = [{member_of}]\n", sock_dir=public_dir)
    assert f"permission%20denied:%20uid%20{uid}%20" in _as_user(path, uid, primary, [])
    assert "nobody" not in grp.getgrgid(member_of).gr_mem  # the database says: no member
    assert "unknown%20mail_id%20AAAAAAAAAAAA" in _as_user(path, 65534, 65534, [member_of])


def test_without_peergroups_the_group_database_decides(server, public_dir: Path,
                                                       group_member, monkeypatch, caplog):
    """Where the kernel does not give the peer's groups, the group database is asked for
    its user's memberships, and a uid without a user entry counts with its gid only."""
    monkeypatch.setattr(ampdp_module, "peer_groups", lambda sock: None)
    uid, primary, member_of = group_member
    _, _, path = server(f"socket_mode = 0o666\nallowed_uids = [0]\n"
                        f"allowed_gids = [{member_of}]\n", sock_dir=public_dir)
    assert "unknown%20mail_id%20AAAAAAAAAAAA" in _as_user(path, uid, primary, [])
    stranger = _unused_uid()
    assert f"permission%20denied:%20uid%20{stranger}%20" in _as_user(path, stranger, primary,
                                                                    [member_of])
    assert f"uid {stranger} has no entry in the user database" in caplog.text


def test_peer_groups_are_the_connecting_process_s_groups():
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        groups = ampdp_module.peer_groups(a)
    assert groups is not None and sorted(groups) == sorted(os.getgroups())


def test_stale_live_and_foreign_files(tmp_path: Path):
    config = cfgmod.loads(config_text(tmp_path / "q", 1, tmp_path / "s.sock"))
    cfg = config.quarantine
    first = bind_ampdp_socket(cfg)
    with pytest.raises(QuarantineError, match="another process serves"):
        bind_ampdp_socket(cfg)
    first.close()  # the file stays behind, nobody listens: stale
    second = bind_ampdp_socket(cfg)
    assert stat.S_ISSOCK(os.stat(tmp_path / "s.sock").st_mode)
    second.close()
    (tmp_path / "s.sock").unlink()
    (tmp_path / "s.sock").write_text("precious")
    with pytest.raises(QuarantineError, match="is not a socket"):
        bind_ampdp_socket(cfg)
    assert (tmp_path / "s.sock").read_text() == "precious"


def test_stray_empty_lines_between_requests_are_skipped(server):
    """A lone empty line is a separator, not a request: it gets no answer, and the
    request after it gets exactly one (the fuzz test's requests always carry an
    attribute for that reason)."""
    config, q, path = server()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        sock.sendall(b"\r\n\n" + format_attr("request", "release")
                     + format_attr("mail_id", "unknownABCDE") + b"\r\n")
        answer = []
        while (line := reader.readline()) not in (b"\r\n", b""):
            answer.append(parse_line(line))
        assert ("exit_code", "69") in answer
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            reader.readline()  # nothing more: the empty lines were not answered


def test_release_log_ids_continue_the_workers_counter(server):
    """In a worker, AM.PDP requests and SMTP transactions share one (PID-NN) counter."""
    from scanner.mailid import LogIds

    ids = LogIds()
    first_smtp = ids.next()  # what the worker's first SMTP transaction got
    config, q, path = server(log_ids=ids)
    [answer] = ampdp(path, [("request", "release"), ("mail_id", "unknownABCDE")])
    [log_id] = [v for k, v in answer if k == "log_id"]
    assert first_smtp.endswith("-01") and log_id.endswith("-02"), log_id
    assert ids.next().endswith("-03")


def test_a_release_waiting_for_the_index_does_not_stop_the_worker(server, sink: Sink):
    """While a release waits for the index's write lock (cron's expire, a reindex, a
    slow PostgreSQL), the worker's event loop, which also runs its SMTP sessions, keeps
    serving: another request is answered meanwhile; the release completes once the
    lock is free."""
    import sqlite3
    import threading

    config, q, path = server()
    rec = store(q)
    real_claim = q.index.claim
    waiting = threading.Event()

    def claim(*args, **kw):  # type: ignore[no-untyped-def]
        waiting.set()  # only observes: the real claim then waits for the real lock
        return real_claim(*args, **kw)
    q.index.claim = claim  # type: ignore[method-assign]
    holder = sqlite3.connect(q.index.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the index's write lock, as another process holds it
    first: list = []
    thread = threading.Thread(target=lambda: first.extend(ampdp(path, [
        ("request", "release"), ("mail_id", rec.mail_id)], timeout=60)))
    try:
        thread.start()
        assert waiting.wait(10), "the release never reached the index"
        [other] = ampdp(path, [("request", "release"), ("mail_id", "unknownABCDE")],
                        timeout=10)
        assert "unknown mail_id unknownABCDE" in _values(other, "setreply")[0]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        thread.join(60)
    [answer] = first
    assert _values(answer, "setreply")[0].startswith("250 2.6.0 Ok"), answer
    assert len(sink.wait_for(1)) == 1


def test_an_index_that_is_busy_is_a_temporary_failure(server, sink: Sink,
                                                      monkeypatch: pytest.MonkeyPatch):
    """An index that cannot be used right now (another process holds its write lock
    past the busy timeout, a PostgreSQL server down) is not the message's fault: like
    amavis's 4xx for a release it cannot do, the answer is 451 4.5.0 with exit_code 75
    (try again), not a permanent '550 Not released'; the next request succeeds."""
    import sqlite3

    from scanner.quarantine import index_sqlite

    monkeypatch.setattr(index_sqlite, "BUSY_TIMEOUT_MS", 300)
    config, q, path = server()
    rec = store(q)
    holder = sqlite3.connect(q.index.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        [answer] = ampdp(path, [("request", "release"), ("mail_id", rec.mail_id)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    [reply] = _values(answer, "setreply")
    assert reply.startswith(f"451 4.5.0 Error in processing, id=rel-{rec.mail_id}: "), reply
    assert "database is locked" in reply and _values(answer, "exit_code") == ["75"]
    assert sink.received == [] and q.get(rec.mail_id).state == "held"
    [answer] = ampdp(path, [("request", "release"), ("mail_id", rec.mail_id)])
    assert _values(answer, "setreply")[0].startswith("250 2.6.0 Ok"), answer


def test_peer_text_cannot_forge_log_lines(server, sink: Sink,
                                          caplog: pytest.LogCaptureFixture):
    """requested_by (a self-service front end passes the user's input) and mail_id are
    %XX-decoded, so they may hold CR, LF or bytes that are not UTF-8: in the log they
    appear escaped, never as a line of their own (a forged 'Passed CLEAN' line)."""
    import logging

    caplog.set_level(logging.INFO, logger="scanner")
    config, q, path = server()
    rec = store(q)
    forged = "\n(4242-01) Passed CLEAN {RelayedInbound}"
    ampdp(path, [("request", "release"), ("mail_id", rec.mail_id),
                 ("requested_by", f"web{forged}\udce9")],
          [("request", "release"), ("mail_id", f"AAAAA\r\n{forged[-5:]}")])
    assert len(sink.wait_for(1)) == 1
    lines = [r.getMessage() for r in caplog.records if "AM.PDP" in r.getMessage()]
    assert len(lines) == 2, lines
    for line in lines:
        assert not [c for c in line if ord(c) < 0x20 or 0xDC80 <= ord(c) <= 0xDCFF], line
    assert "by web\\x0a(4242-01) Passed CLEAN {RelayedInbound}\\xe9 (AM.PDP, uid" in lines[0]
    assert "AAAAA\\x0d\\x0a" in lines[1]
    assert q.get(rec.mail_id).released_by.startswith("web\\x0a(4242-01) Passed CLEAN")

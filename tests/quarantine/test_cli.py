"""``scanner quarantine``: output, exit codes and error messages, as cron and admins see them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scanner import config as cfgmod
from scanner.quarantine.store import Quarantine
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink

from .util import REPO, config_text, sample, store


@pytest.fixture
def setup(tmp_path: Path, sink: Sink):
    path = tmp_path / "scanner.toml"
    path.write_text(config_text(tmp_path / "q", sink.port), encoding="utf-8")
    q = Quarantine(cfgmod.load(str(path)).quarantine)
    return path, q


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("SCANNER_CONFIG", None)
    action, *rest = args
    return subprocess.run([sys.executable, "-m", "scanner", "quarantine", action,
                           "--config", str(config), *rest],
                          capture_output=True, env=env, timeout=60)


def test_passed_clean_and_spammy_mail_is_listed_by_its_category(setup):
    """quarantine_passed = ["clean"] keeps CLEAN and SPAMMY mail; --category clean was
    refused as "not a quarantine category", so it could not be listed on its own."""
    config, q = setup
    store(q, subject="spam one")
    clean = store(q, category="CLEAN", subject="clean one")
    spammy = store(q, category="SPAMMY", subject="spammy one")
    for name, rec in (("clean", clean), ("SPAMMY", spammy)):
        out = cli(config, "list", "--json", "--category", name)
        assert out.returncode == 0, out.stderr
        assert [r["mail_id"] for r in json.loads(out.stdout)] == [rec.mail_id]


def test_list_show_and_raw(setup):
    config, q = setup
    spam = store(q, subject="spam one")
    virus = store(q, category="VIRUS", subject="virus one", recipients=["carol@example.test"])
    out = cli(config, "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 2 and spam.mail_id in lines[0] and "'virus one'" in lines[1]
    out = cli(config, "list", "--json", "--category", "VIRUS", "--since", "1h")
    assert [r["mail_id"] for r in json.loads(out.stdout)] == [virus.mail_id]
    assert json.loads(out.stdout)[0]["state"] == "held"
    out = cli(config, "list", "--json", "--rcpt", "carol@example.test", "--since", "2000-01-01")
    assert [r["mail_id"] for r in json.loads(out.stdout)] == [virus.mail_id]
    out = cli(config, "show", spam.mail_id)
    text = out.stdout.decode()
    assert out.returncode == 0 and f"secret_id:       {spam.secret_id}" in text
    assert "state:           held" in text and spam.relative_path in text
    assert "held for:        not recorded" in text
    out = cli(config, "show", spam.mail_id, "--raw")
    assert out.stdout == sample("spam one")
    mixed = store(q, recipients=["lover@example.test", "bob@example.test"],
                  held_for=["bob@example.test"])
    text = cli(config, "show", mixed.mail_id).stdout.decode()
    assert "recipients:      lover@example.test, bob@example.test\n" in text
    assert "held for:        bob@example.test\n" in text
    assert json.loads(cli(config, "show", mixed.mail_id, "--json").stdout)["held_for"] == [
        "bob@example.test"]


def test_list_by_sender_pattern_and_subject(setup):
    """--sender takes the policy's address patterns (an address with or without its
    extension, user@, @dom, @.dom for subdomains, <> for bounces; either IDN spelling)
    and --subject a piece of the Subject in any case; both narrow the other filters."""
    config, q = setup
    alice = store(q, sender="Alice+news@Example.ORG", subject="Cheap Pills today")
    sub = store(q, sender="bob@mail.example.org", subject="invoice 42")
    bounce = store(q, sender="<>", subject="Undelivered Mail Returned to Sender")
    idn = store(q, sender="info@bücher.example", subject="Bücher im Angebot",
                category="VIRUS")

    def ids(*args: str) -> list[str]:
        out = cli(config, "list", "--json", *args)
        assert out.returncode == 0, out.stderr
        return [r["mail_id"] for r in json.loads(out.stdout)]

    assert ids("--sender", "alice@example.org") == [alice.mail_id]
    assert ids("--sender", "<ALICE+news@example.org>") == [alice.mail_id]
    assert ids("--sender", "alice+other@example.org") == []
    assert ids("--sender", "alice@") == [alice.mail_id]
    assert ids("--sender", "@example.org") == [alice.mail_id]
    assert ids("--sender", "@.example.org") == [alice.mail_id, sub.mail_id]
    assert ids("--sender", "<>") == [bounce.mail_id]
    assert ids("--sender", "") == [bounce.mail_id]
    assert ids("--sender", "@xn--bcher-kva.example") == [idn.mail_id]
    assert ids("--sender", "@.example.org", "--subject", "INVOICE") == [sub.mail_id]
    assert ids("--subject", "bücher") == [idn.mail_id]
    assert ids("--subject", "pills", "--category", "VIRUS") == []
    out = cli(config, "list", "--sender", "alice")
    assert out.returncode == 2 and b"'alice' is not an address pattern" in out.stderr
    out = cli(config, "list", "--ids", "--sender", "@.example.org")
    assert out.returncode == 0 and out.stdout == f"{alice.mail_id}\n{sub.mail_id}\n".encode()
    assert cli(config, "list", "--ids", "--json").returncode == 2


def test_text_from_the_mail_cannot_drive_the_terminal(setup):
    """Subject and envelope come from the sender (an RFC 2047 subject decodes to any
    character): 'show' and 'list' print control characters escaped, so a spammer's
    ESC or CSI sequences cannot retitle, clear or rewrite the admin's terminal."""
    config, q = setup
    evil = "\x1b]0;owned\x07\x1b[2J\x9b31m"
    rec = q.store(mail_id="evilTERMINAL", raw=sample("x"), sender=f"a{evil}@example.org",
                  recipients=[f"b{evil}@example.test"], category="SPAM", score=9.0,
                  symbols=[], subject=f"hi {evil}", message_id=f"<{evil}@x>",
                  client_addr=None, policy_bank="")
    for action in (["show", rec.mail_id], ["list"]):
        out = cli(config, *action)
        assert out.returncode == 0, out.stderr
        text = out.stdout.decode()
        assert not [c for c in text if ord(c) < 0x20 and c != "\n" or 0x7f <= ord(c) <= 0x9f]
        assert "\\x1b]0;owned\\x07" in text and "\\x9b31m" in text


def test_errors_name_what_failed(setup, tmp_path: Path):
    config, q = setup
    out = cli(config, "show", "AAAAAAAAAAAA")
    assert out.returncode == 1
    assert b"unknown mail_id AAAAAAAAAAAA: no row in the quarantine index" in out.stderr
    rec = store(q)
    path = Path(rec.path)
    path.write_bytes(b"\x1f\x8b garbage")
    out = cli(config, "show", rec.mail_id, "--raw")
    assert out.returncode == 1 and f"{path} is corrupt".encode() in out.stderr
    out = cli(config, "release", rec.mail_id)
    assert out.returncode == 1 and b"is corrupt" in out.stderr
    out = cli(config, "list", "--since", "yesterday")
    assert out.returncode == 2 and b"neither a duration" in out.stderr
    out = cli(config, "expire", "--older-than", "soon")
    assert out.returncode == 2 and b"not a duration" in out.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[quarantine]\nsubdir_levels = 9\n")
    out = cli(bad, "list")
    assert out.returncode == 2 and b"subdir_levels" in out.stderr


def test_release_exit_codes(setup, sink: Sink):
    config, q = setup
    rec = store(q, recipients=["bob@example.test", "carol@example.test"])
    out = cli(config, "release", rec.mail_id, "--to", "not-an-address")
    assert out.returncode == 1 and b"'not-an-address' is not a valid recipient" in out.stderr
    out = cli(config, "release", rec.mail_id, "--by", "helpdesk")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines()[0].startswith(
        "<bob@example.test>: 250 2.0.0 from MTA(smtp:[127.0.0.1]:")
    assert sink.wait_for(1)[0].data.startswith(b"X-Quarantine-Released: by helpdesk at ")
    out = cli(config, "release", rec.mail_id)
    assert out.returncode == 1 and b"already released" in out.stderr
    out = cli(config, "release", rec.mail_id, "--to", "admin@example.test", "--force")
    assert out.returncode == 0
    assert sink.wait_for(2)[1].recipients == ["admin@example.test"]
    assert len(sink.received) == 2


def test_release_with_the_next_hop_down_is_a_temporary_failure(tmp_path: Path):
    config = tmp_path / "scanner.toml"
    config.write_text(config_text(tmp_path / "q", free_port()))
    q = Quarantine(cfgmod.load(str(config)).quarantine)
    rec = store(q)
    out = cli(config, "release", rec.mail_id)
    assert out.returncode == 75
    assert b"451 4.4.1 Next hop smtp:[127.0.0.1]:" in out.stdout
    assert b"failed temporarily" in out.stderr
    assert q.get(rec.mail_id).state == "held"


def test_delete_and_expire(setup):
    config, q = setup
    old = store(q, subject="old")
    new = store(q, subject="new")
    with q.index._transaction(write=True) as run:
        run("UPDATE quarantine SET stored_at = ? WHERE mail_id = ?",
            [time.time() - 31 * 86400, old.mail_id])
    out = cli(config, "expire", "--older-than", "30d")
    assert out.returncode == 0 and out.stdout == b"expired 1 message(s) older than 30d\n"
    assert cli(config, "expire", "--older-than", "30d", "-q").stdout == b""
    out = cli(config, "delete", new.mail_id)
    assert out.returncode == 0 and new.relative_path.encode() in out.stdout
    out = cli(config, "delete", new.mail_id)
    assert out.returncode == 1 and b"unknown mail_id" in out.stderr
    assert q.list() == []


def test_expire_one_category_keeps_the_others(setup):
    """expire --category: a retention per category (viruses a week, spam a month);
    old mail of other categories and new mail of that one stay, files included."""
    config, q = setup
    old_virus = store(q, category="VIRUS", subject="old virus")
    old_spam = store(q, category="SPAM", subject="old spam")
    new_virus = store(q, category="VIRUS", subject="new virus")
    with q.index._transaction(write=True) as run:
        for rec in (old_virus, old_spam):
            run("UPDATE quarantine SET stored_at = ? WHERE mail_id = ?",
                [time.time() - 8 * 86400, rec.mail_id])
    out = cli(config, "expire", "--older-than", "7d", "--category", "virus")
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"expired 1 VIRUS message(s) older than 7d\n"
    assert sorted(r.mail_id for r in q.list()) == sorted([old_spam.mail_id, new_virus.mail_id])
    assert not Path(old_virus.path).exists() and Path(old_spam.path).exists()
    out = cli(config, "expire", "--older-than", "7d", "--category", "viruses")
    assert out.returncode == 2 and b"'viruses' is not a quarantine category" in out.stderr


def test_list_by_state_audits_releases(setup):
    """--state released lists what was released (an audit), held what still waits,
    releasing a release that is under way or broke off."""
    config, q = setup
    released = store(q, subject="released one")
    held = store(q, subject="held one")
    stuck = store(q, subject="stuck one")
    assert cli(config, "release", released.mail_id).returncode == 0
    with q.index._transaction(write=True) as run:
        run("UPDATE quarantine SET release_started = ? WHERE mail_id = ?",
            [time.time(), stuck.mail_id])
    for state, rec in (("released", released), ("held", held), ("releasing", stuck)):
        out = cli(config, "list", "--ids", "--state", state)
        assert out.returncode == 0, out.stderr
        assert out.stdout == f"{rec.mail_id}\n".encode(), state
    out = cli(config, "list", "--state", "done")
    assert out.returncode == 2 and b"invalid choice: 'done'" in out.stderr


def test_two_cli_releases_at_once_deliver_once(setup, sink: Sink):
    config, q = setup
    sink.behaviour.delay = 0.5
    rec = store(q)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-m", "scanner", "quarantine", "release",
                               rec.mail_id, "--config", str(config)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    results = sorted((p.wait(30), p.stderr.read()) for p in procs)  # type: ignore[union-attr]
    for p in procs:
        p.stdout.close()  # type: ignore[union-attr]
        p.stderr.close()  # type: ignore[union-attr]
    assert [code for code, _ in results] == [0, 1]
    assert b"released" in results[1][1]
    time.sleep(0.2)
    assert len(sink.received) == 1


def test_cli_works_while_the_daemon_stores(setup):
    """Readers (cron, admins) and the writing daemon share the SQLite index (WAL)."""
    config, q = setup
    stop = threading.Event()
    errors: list[Exception] = []

    def writer() -> None:
        while not stop.is_set():
            try:
                store(q)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        outs = [cli(config, "list", "--json") for _ in range(3)]
        outs.append(cli(config, "expire", "--older-than", "1d"))
    finally:
        stop.set()
        thread.join(10)
    assert errors == []
    assert [o.returncode for o in outs] == [0, 0, 0, 0], [o.stderr for o in outs]
    assert len(json.loads(outs[2].stdout)) > 0


def test_a_user_who_may_not_read_the_quarantine_is_told_so(setup, monkeypatch, capsys):
    """Run by a user without access to the quarantine directory (0750 scanner:scanner):
    an error naming it and who may, exit 1; not an empty list or a traceback. (Root
    passes every access check, so the refusal is simulated.)"""
    from scanner.cli import main
    from scanner.quarantine import store as store_module

    config, q = setup
    rec = store(q)
    real_access = os.access
    directory = str(Path(rec.path).parents[1])
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == directory
                        else real_access(p, mode))
    for action in (["list"], ["show", rec.mail_id], ["release", rec.mail_id]):
        assert main(["quarantine", action[0], "--config", str(config), *action[1:]]) == 1
        err = capsys.readouterr().err
        assert f"{directory}: permission denied" in err and "runuser -u scanner" in err
    monkeypatch.setattr(os, "access", real_access)

    def denied(*args: object, **kw: object) -> None:
        raise PermissionError(13, "Permission denied", f"{directory}/_")
    monkeypatch.setattr(store_module.Quarantine, "get", denied)
    assert main(["quarantine", "show", rec.mail_id, "--config", str(config)]) == 1
    assert f"{directory}/_: Permission denied" in capsys.readouterr().err


def test_listing_a_quarantine_directory_that_does_not_exist_says_so(tmp_path: Path):
    config = tmp_path / "scanner.toml"
    config.write_text(config_text(tmp_path / "mistyped", free_port()))
    out = cli(config, "list")
    assert out.returncode == 0 and out.stdout == b""
    assert f"{tmp_path / 'mistyped'} does not exist".encode() in out.stderr
    assert not (tmp_path / "mistyped").exists()  # listing creates nothing


def test_a_readonly_index_says_which_user_to_run_as(setup, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]):
    """As a user who may read the quarantine directory but not write its index, SQLite
    says only 'attempt to write a readonly database' (seen as nobody in the bad-input
    sweep); the message says what to do."""
    from scanner.cli import main
    from scanner.quarantine.record import QuarantineError

    config, q = setup
    store(q)

    def readonly(*_a: object, **_k: object) -> list:
        raise QuarantineError(f"quarantine index {q.directory}/index.sqlite: attempt to "
                              "write a readonly database")
    monkeypatch.setattr(Quarantine, "records", readonly)
    assert main(["quarantine", "list", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "readonly database; this user may not write the quarantine index" in err
    assert "runuser -u scanner" in err


def test_reindex_after_the_index_was_moved_aside(setup, sink: Sink):
    config, q = setup
    rec = store(q, recipients=["bob@example.test"])
    (q.directory / "index.sqlite").rename(q.directory / "index.sqlite.corrupt")
    out = cli(config, "reindex", "--dry-run")
    assert out.returncode == 0 and b"would add  " in out.stdout
    assert b"1 row(s) would be added, 0 file(s) left out" in out.stderr
    out = cli(config, "reindex")
    assert out.returncode == 0 and rec.mail_id.encode() in out.stdout
    out = cli(config, "release", rec.mail_id)
    assert out.returncode == 0, out.stderr
    got = sink.wait_for(1)[0]
    assert got.recipients == ["bob@example.test"]
    assert b"X-Envelope-To" not in got.data and b"X-Scanner-Quarantine" not in got.data


def test_listing_a_huge_quarantine_takes_constant_memory(setup, tmp_path: Path):
    """A big site holds hundreds of thousands of messages: 'list' and 'list --json'
    read the index in batches and print as they go (they took 0.6 and 2.2 GB for
    300 000 rows), in order across batches, also where many share one stored_at."""
    import contextlib
    import tracemalloc

    from scanner.cli import main
    from scanner.quarantine.index import COLUMNS

    config, q = setup
    rec = store(q, subject="a long subject " * 10)
    count = 10000
    picked = {"mail_id": "printf('%012d', i)", "stored_at": "stored_at - i / 7"}
    with q.index._transaction(write=True) as run:
        run(f"INSERT INTO quarantine ({', '.join(COLUMNS)}) WITH RECURSIVE n(i) AS "
            f"(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) SELECT "
            + ", ".join(picked.get(c, c) for c in COLUMNS)
            + " FROM n, quarantine WHERE quarantine.mail_id = ?", [rec.mail_id])
    outputs = {"list": tmp_path / "list.txt", "json": tmp_path / "list.json"}
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # imports done
        assert main(["quarantine", "list", "--config", str(config), "--category", "VIRUS"]) == 0
    tracemalloc.start()
    try:
        for kind, target in outputs.items():
            with open(target, "w", encoding="utf-8") as out, contextlib.redirect_stdout(out):
                extra = ["--json"] if kind == "json" else []
                assert main(["quarantine", "list", "--config", str(config), *extra]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB for {count} rows"
    listed = json.loads(outputs["json"].read_text(encoding="utf-8"))
    expect = sorted((r["stored_at"], r["mail_id"]) for r in listed)
    assert [(r["stored_at"], r["mail_id"]) for r in listed] == expect
    assert len({r["mail_id"] for r in listed}) == count + 1
    lines = outputs["list"].read_text(encoding="utf-8").splitlines()
    assert [line.split()[1] for line in lines] == [r["mail_id"] for r in listed]


def test_output_cut_short_by_its_reader_ends_quietly(setup):
    """'scanner quarantine list | head -1': the reader closes the pipe early. The
    command stops without an error message (it said 'quarantine: Broken pipe' with
    exit 1, as if the quarantine had failed) and exits 141, as SIGPIPE-ended commands do."""
    config, q = setup
    rec = store(q)
    for action in (["list"], ["list", "--json"], ["show", rec.mail_id],
                   ["show", rec.mail_id, "--raw"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # a reader that has gone away before anything was written
        try:
            env = dict(os.environ, PYTHONPATH=str(REPO))
            out = subprocess.run([sys.executable, "-m", "scanner", "quarantine", action[0],
                                  "--config", str(config), *action[1:]], stdout=write_end,
                                 stderr=subprocess.PIPE, env=env, timeout=60)
        finally:
            os.close(write_end)
        assert (out.returncode, out.stderr) == (141, b""), (action, out.stderr)


def test_ids_as_the_log_line_and_amavisd_release_give_them(setup, sink: Sink):
    """The log line says 'quarantine: 7/spam-7vykgLjHGVrk.gz' and amavisd-release takes
    that path: show, release and delete take it too (also the bare file name, an
    absolute path, amavis's '[partition]' suffix, and ids with '-' or '_' at the ends)."""
    config, q = setup
    odd = store(q, mail_id="_odd-id_9-x-")
    plain = store(q)
    out = cli(config, "show", odd.relative_path)
    assert out.returncode == 0 and f"mail_id:         {odd.mail_id}" in out.stdout.decode()
    for form in (f"spam-{odd.mail_id}.gz", f"{odd.path}", f"{odd.relative_path}[23]",
                 f" {odd.mail_id} "):
        out = cli(config, "show", form, "--json")
        assert out.returncode == 0, (form, out.stderr)
        assert json.loads(out.stdout)["mail_id"] == odd.mail_id
    out = cli(config, "release", plain.relative_path)
    assert out.returncode == 0, out.stderr
    assert len(sink.wait_for(1)) == 1
    out = cli(config, "delete", odd.relative_path)
    assert out.returncode == 0 and odd.relative_path.encode() in out.stdout
    out = cli(config, "show", "7/virus-short.gz")
    assert out.returncode == 1 and b"'7/virus-short.gz' is not a mail_id" in out.stderr


def test_list_held_for_leaves_out_the_copies_a_recipient_got(setup):
    """--held-for lists what a user's own quarantine page shows: the messages held for
    them, not a copy kept of mail that reached them (a lover's); a row stored before
    the index recorded it counts as held for every recipient. The address matches in
    either IDN spelling, as --rcpt does."""
    config, q = setup
    held = store(q, subject="held", recipients=["lover@example.test", "bob@example.test"],
                 held_for=["bob@example.test"])
    store(q, subject="kept only", recipients=["bob@example.test"], held_for=[])
    old = store(q, subject="old row", recipients=["bob@example.test"])
    idn = store(q, subject="idn", recipients=["jürgen@xn--mnchen-3ya.test"],
                held_for=["jürgen@xn--mnchen-3ya.test"])

    def ids(*args: str) -> list[str]:
        out = cli(config, "list", "--ids", *args)
        assert out.returncode == 0, out.stderr
        return out.stdout.decode().split()

    assert ids("--held-for", "Bob@Example.test") == [held.mail_id, old.mail_id]
    assert ids("--held-for", "lover@example.test") == []
    assert len(ids("--rcpt", "bob@example.test")) == 3
    assert ids("--held-for", "jürgen@münchen.test") == [idn.mail_id]
    out = cli(config, "list", "--rcpt", "a@b.test", "--held-for", "a@b.test")
    assert out.returncode == 2 and b"not allowed with argument" in out.stderr

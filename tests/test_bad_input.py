"""Operator mistakes and bad input on the command line: each gives a message that names
what failed and an exit code from the README, never a traceback or a hang."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.config import loads
from scanner.errors import ConfigError
from scanner.ml.errors import ModelError
from scanner.ml.model import load_model, save_model
from scanner.ml.shipped import shipped_model_path
from scanner.scores import load_scores
from tests.helpers import REPO

NO_NETWORK = '[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl"]\n'
MESSAGE = b"From: a@example.org\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


def scanner(*args: str, stdin_closed: bool = False, input: bytes | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m scanner ARGS`` from the checkout; with ``stdin_closed`` file
    descriptor 0 is closed, as a hook started with ``<&-`` has it."""
    def close_stdin() -> None:
        os.close(0)

    return subprocess.run([sys.executable, "-m", "scanner", *args], input=input,
                          capture_output=True, timeout=timeout, cwd=REPO,
                          preexec_fn=close_stdin if stdin_closed else None)


def no_traceback(run: subprocess.CompletedProcess) -> None:
    assert b"Traceback" not in run.stderr, run.stderr.decode()


def test_closed_standard_input_is_reported_not_a_traceback(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text(NO_NETWORK)
    model = tmp_path / "m.model"
    model.write_bytes(b"")  # never reached: standard input is read first
    for args in (("scan", "-c", str(config), "-"),
                 ("rules", "test", "--config", str(config), "-"),
                 ("learn", "--spam", "--model", str(model), "-")):
        run = scanner(*args, stdin_closed=True)
        no_traceback(run)
        assert run.returncode == 1, (args, run.stderr)
        assert b"standard input is closed" in run.stderr, run.stderr


@pytest.mark.parametrize("content,needle", [
    (b"[symbols]\nMY_RULE = 3\n", "'symbols.MY_RULE' must be a table"),
    (b"symbols = [1]\n", "'symbols' must be a table"),
    (b"fail = 3\n", "'fail' must be a table"),
    (b"\xff[symbols.MY_RULE]\nweight = 1\n", "(checks.score_files[0]): the score table is "
                                             "not UTF-8 text"),
    (b"[MY_RULE]\nweight = 5\n", "unknown key 'MY_RULE'; a score table has [symbols.NAME]"),
    (b'[symbols.MY_RULE]\ntempfail = "no"\n', "'symbols.MY_RULE.tempfail' must be true or "
                                              "false, got 'no'"),
    (b"[symbols.MY_RULE]\ndescription = 5\n", "'symbols.MY_RULE.description' must be a "
                                              "string"),
    (b"[symbols\n", "(checks.score_files[0]): not valid TOML: "),
])
def test_a_bad_site_score_file_is_a_configuration_error(tmp_path: Path, content: bytes,
                                                        needle: str):
    """A score file that is not the shape the loader expects stops start-up with its name
    (it was a traceback, or, for a table outside [symbols], silently changed nothing)."""
    scores = tmp_path / "site-scores.toml"
    scores.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_scores((str(scores),))
    assert str(caught.value).startswith(str(scores)) and needle in str(caught.value)


def test_a_missing_score_file_names_the_key(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text(f'[checks]\nscore_files = ["{tmp_path}/nope.toml"]\n')
    run = scanner("config", "check", str(config))
    no_traceback(run)
    assert run.returncode == 2
    assert (f"{tmp_path}/nope.toml (checks.score_files[0]): cannot read the score table: "
            "No such file or directory").encode() in run.stderr


@pytest.mark.parametrize("text,needle", [
    ('[policy]\nsql_lookup = "mysql://db/x"\n', "'policy.sql_lookup' = 'mysql://db/x': use"),
    ('[server]\nhostname = "mx\\r\\nX-Injected: 1"\n', "'server.hostname' = "),
    ('[server]\nhostname = "mail example"\n', "is not a host name"),
    ('[reinject]\nhelo = "a b"\n', "'reinject.helo' = 'a b' is not a host name"),
    ('[policy]\nheader_prefix = "X Spam:"\n', "'policy.header_prefix' = 'X Spam:' is not a "
                                              "header field name"),
    ('[policy]\nvirus_scanned_header = "X-Scanned: yes"\n', "'policy.virus_scanned_header'"),
    ('[policy]\nvirus_scanned_value = "ok\\nBcc: x@example.org"\n',
     "'policy.virus_scanned_value' = 'ok\\nBcc: x@example.org' is not one line of header "
     "text"),
    ('[policy.recipients."a@example.com"]\nsubject_tag2 = "[SPAM]\\r\\nX: y "\n',
     "'policy.recipients.\"a@example.com\".subject_tag2'"),
    ('[policy_banks.OUT]\nsubject_tag_unchecked = "x\\ny"\n',
     "'policy_banks.\"OUT\".subject_tag_unchecked'"),
    ('[[listeners]]\naddress = "0.0.0.0"\nport = 10024\n[[listeners]]\nport = 10024\n',
     "'listeners[1]' 127.0.0.1:10024 overlaps 'listeners[0]' 0.0.0.0:10024"),
    ('[[listeners]]\naddress = "::"\nport = 10025\n',
     "'reinject.port' 10025 is one of our own listeners (:::10025)"),
    ('[reinject]\nhost = "localhost"\nport = 10024\n',
     "'reinject.port' 10024 is one of our own listeners (127.0.0.1:10024)"),
    ('[quarantine]\nindex = "mysql://x"\n', "'quarantine.index' = 'mysql://x': use"),
    ('[[listeners]]\npath = "run/lmtp.sock"\n',
     "'listeners[0].path' = 'run/lmtp.sock' is not an absolute path"),
    ('[[listeners]]\npath = "/' + "x" * 110 + '"\n', "is longer than 107 bytes"),
    ('[[listeners]]\npath = "/run/s.sock"\n[[listeners]]\npath = "/run/s.sock"\n',
     "'listeners[1]' repeats the path of 'listeners[0]' (/run/s.sock)"),
    ('[[listeners]]\npath = "/run/s.sock"\n[quarantine]\nampdp_socket = "/run/s.sock"\n',
     "'listeners[0].path' = '/run/s.sock' is also quarantine.ampdp_socket"),
])
def test_values_serve_cannot_use_stop_the_configuration_with_file_and_key(text: str,
                                                                         needle: str):
    """Each was accepted by ``config check``: a bad SQL URL then crashed every worker at
    its start, a host name or header text with a line break wrote extra lines into SMTP
    replies and headers, overlapping listeners failed to bind, and a next hop on a
    wildcard or 'localhost' listener looped mail. Errors of a section's own checks
    (quarantine.index) now name the file too."""
    with pytest.raises(ConfigError) as caught:
        loads(text, "/etc/scanner/site.toml")
    assert str(caught.value).startswith("/etc/scanner/site.toml: ")
    assert needle in str(caught.value)


def test_a_check_settings_error_names_the_file(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text('[checks.settings.clamav]\nendpoints = ["clamd.sock"]\n')
    run = scanner("config", "check", str(config))
    no_traceback(run)
    assert run.returncode == 2
    assert (f"{config}: checks.settings.clamav.endpoints: 'clamd.sock' is not a clamd "
            "endpoint").encode() in run.stderr


@pytest.mark.parametrize("text", [
    '[server]\nhostname = "mx1.example.com"\n',
    '[policy]\nsubject_tag2 = "[SPAM]\\t"\nheader_prefix = ""\n',
    '[[listeners]]\naddress = "0.0.0.0"\nport = 10024\n[[listeners]]\naddress = "::1"\n'
    'port = 10024\n',
    '[[listeners]]\naddress = "0.0.0.0"\nport = 10024\n',
    '[policy]\nsql_lookup = "sqlite:/var/lib/scanner/policy.sqlite"\n',
])
def test_good_values_next_to_those_stay_accepted(text: str):
    loads(text, "site.toml")


MODERN = REPO / "corpora" / "modern"


def _modern_split(tmp_path: Path) -> tuple[Path, Path]:
    ham, spam = tmp_path / "ham", tmp_path / "spam"
    for folder, prefix in ((ham, "ham-"), (spam, "spam-")):
        folder.mkdir()
        for path in MODERN.glob(f"{prefix}*.eml"):
            (folder / path.name).write_bytes(path.read_bytes())
    return ham, spam


@pytest.mark.parametrize("args,needle", [
    (("train", "--jobs", "-5"), "argument --jobs: -5 is negative"),
    (("eval", "--jobs", "-1"), "argument --jobs: -1 is negative"),
    (("eval", "--folds", "0"), "argument --folds: 0: cross-validation needs at least 2"),
    (("eval", "--threshold", "nan"), "argument --threshold: nan is not a probability"),
    (("eval", "--threshold", "2"), "argument --threshold: 2 is not a probability"),
])
def test_ml_option_values_out_of_range_are_usage_errors(tmp_path: Path, args: tuple,
                                                        needle: str):
    """--jobs -5 was a ValueError traceback from multiprocessing (train) or its bare
    message (eval); --folds 0 silently scored the configured model instead of
    cross-validating; a threshold of nan or 2 counted nothing as spam."""
    ham, spam = _modern_split(tmp_path)
    run = scanner(*args, "--quiet", "--model" if args[0] == "train" else "--json",
                  *((str(tmp_path / "m.model"),) if args[0] == "train" else ()),
                  "--ham", str(ham), "--spam", str(spam))
    no_traceback(run)
    assert run.returncode == 2 and needle.encode() in run.stderr, run.stderr


def test_train_into_a_directory_or_unwritable_place_is_reported(tmp_path: Path):
    ham, spam = _modern_split(tmp_path)
    (tmp_path / "models").mkdir()
    run = scanner("train", "--quiet", "--jobs", "1", "--model", str(tmp_path / "models"),
                  "--ham", str(ham), "--spam", str(spam))
    no_traceback(run)
    assert run.returncode == 1
    assert f"{tmp_path / 'models'}: is a directory".encode() in run.stderr
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    model = load_model(shipped_model_path())
    with pytest.raises(ModelError, match="cannot write the model file"):
        save_model(model, blocker / "site.model")


def test_the_same_mail_as_ham_and_spam_is_named_as_the_reason(tmp_path: Path):
    ham, _ = _modern_split(tmp_path)
    run = scanner("eval", "--quiet", "--jobs", "1", "--ham", str(ham), "--spam", str(ham))
    assert run.returncode == 1
    assert b"every message was given as both ham and spam" in run.stderr, run.stderr


def test_a_fifo_among_the_rule_files_is_skipped_not_waited_on(tmp_path: Path):
    """``rules lint FIFO`` and an ``include`` of a FIFO blocked for ever (so would
    ``scanner serve`` at start with such an include in a rules directory)."""
    fifo = tmp_path / "rules.cf"
    os.mkfifo(fifo)
    rules = tmp_path / "rules.d"
    rules.mkdir()
    (rules / "local.cf").write_text(f"include {fifo}\nheader SC_T Subject =~ /x/\n")
    for args in (("rules", "lint", str(fifo)), ("rules", "lint", str(rules))):
        run = scanner(*args, timeout=30)
        no_traceback(run)
        assert run.returncode == 1
        assert f"{fifo}:0: not a regular file".encode() in run.stdout, run.stdout


@pytest.mark.parametrize("text,needle", [
    ('[server]\ntmp_dir = "{missing}"\n', "'server.tmp_dir' {missing}: not a directory"),
    ('[server]\npid_file = "{missing}/scanner.pid"\n',
     "'server.pid_file' {missing}/scanner.pid: the directory {missing} does not exist"),
    ('[server]\nlog_file = "{missing}/scanner.log"\n',
     "'server.log_file' {missing}/scanner.log: the directory {missing} does not exist"),
    ('[quarantine]\ndirectory = "{file}/quarantine"\nampdp_socket = ""\n',
     "'quarantine.directory' {file}/quarantine: cannot create it: {file} is not a directory"),
    ('[policy.recipients."@example.com"]\narchive_directory = "{file}/archive"\n',
     "'policy.recipients.\"@example.com\".archive_directory' {file}/archive: cannot "
     "create it: {file} is not a directory"),
    ('[quarantine]\nsocket_group = "no-such-group-here"\n',
     "'quarantine.socket_group' 'no-such-group-here': no such group"),
])
def test_config_check_stops_at_what_serve_stops_at(tmp_path: Path, text: str, needle: str):
    """README: ``config check`` validates 'as scanner serve does at start-up'; these
    settings stop serve with exit 2, and ``config check`` said OK."""
    values = {"missing": str(tmp_path / "missing"), "file": str(tmp_path / "a-file")}
    (tmp_path / "a-file").write_text("")
    config = tmp_path / "c.toml"
    config.write_text(NO_NETWORK + text.format(**values))
    run = scanner("config", "check", str(config))
    no_traceback(run)
    assert run.returncode == 2, run.stdout
    assert f"{config}: {needle.format(**values)}".encode() in run.stderr, run.stderr
    assert not (tmp_path / "missing").exists()  # nothing created on the way


def test_sighup_says_when_the_configuration_file_changed_or_broke(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """SIGHUP does not re-read the configuration; an edited file, or one that no longer
    loads (the next restart would fail), went unmentioned."""
    from scanner.config import load
    from scanner.serve.master import report_config_on_hup

    path = tmp_path / "scanner.toml"
    path.write_text(NO_NETWORK)
    config = load(str(path))
    with caplog.at_level("WARNING", logger="scanner"):
        report_config_on_hup(config)
        # only scanner's own records: a previous test's event loop, collected now, may
        # log asyncio's "Task was destroyed" here
        assert [r.getMessage() for r in caplog.records if r.name.startswith("scanner")] == []
        path.write_text(NO_NETWORK + "[policy]\nspam_destiny = \"discard\"\n")
        report_config_on_hup(config)
        assert f"SIGHUP: {path} has changed since start" in caplog.text
        assert "restart scanner serve to apply it" in caplog.text
        caplog.clear()
        path.write_text("[server\n")
        report_config_on_hup(config)
    assert f"SIGHUP: {path}: not valid TOML" in caplog.text
    assert "still running with the configuration read at start" in caplog.text


def test_quarantine_list_refuses_a_category_it_never_holds(tmp_path: Path):
    """``--category SPAMM`` (or the configuration's spelling ``bad_header``) listed
    nothing with exit 0, as if nothing were held."""
    from scanner.cli.quarantine_cmd import _category

    config = tmp_path / "c.toml"
    config.write_text(f'[quarantine]\ndirectory = "{tmp_path}/q"\nampdp_socket = ""\n')
    run = scanner("quarantine", "list", "--config", str(config), "--category", "SPAMM")
    no_traceback(run)
    assert run.returncode == 2
    assert b"'SPAMM' is not a quarantine category; use one of VIRUS," in run.stderr
    assert _category("bad_header") == "BAD-HEADER" and _category("spam") == "SPAM"


@pytest.mark.parametrize(("text", "expected"), [
    ('[policy]\nnotify_admin = { viruz = "a@example.com" }\n',
     "'policy.notify_admin.viruz': no such category"),
    ('[policy]\nnotify_admin = { virus = "post master@example.com" }\n',
     "'policy.notify_admin.virus' = 'post master@example.com' is not an address"),
    ('[policy_banks.ORIGINATING]\nnotify_admin = { spamm = "a@example.com" }\n',
     "'policy_banks.\"ORIGINATING\".notify_admin.spamm': no such category"),
    ('[policy]\nnotify_recipient = ["virus"]\n',
     "'policy.notify_recipient' needs 'policy.local_domains'"),
    ('[policy]\nnotify_recipient = ["viruz"]\nlocal_domains = ["example.com"]\n',
     "'policy.notify_recipient[0]' = 'viruz' is not allowed"),
    ('[policy.recipients."@example.com"]\nnotify_recipient = ["banned"]\n',
     "'policy.recipients.\"@example.com\".notify_recipient' needs 'policy.local_domains'"),
])
def test_a_notify_admin_table_that_would_never_notify_is_refused(text: str,
                                                                 expected: str) -> None:
    from scanner import config as cfgmod
    from scanner.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(expected)):
        cfgmod.loads(text, "x.toml")


def test_every_notified_category_is_one_the_configuration_accepts() -> None:
    from scanner.actions.notify import KEYS
    from scanner.config import NOTIFY_CATEGORIES

    assert set(KEYS.values()) == set(NOTIFY_CATEGORIES)


def test_eval_of_one_class_only_is_an_error_not_nan_figures(tmp_path: Path):
    ham, _ = _modern_split(tmp_path)
    run = scanner("eval", "--quiet", "--model", str(shipped_model_path()), "--ham", str(ham))
    no_traceback(run)
    assert run.returncode == 1 and b"no readable spam among the messages given" in run.stderr
    assert b"nan" not in run.stdout


@pytest.mark.parametrize("edit, needle", [
    ("[checks.settings.banned]\nrules = 5\n",
     "'checks.settings.banned.rules' must be an array"),
    ('[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl"]\n'
     'score_files = ["{tmp}/gone.toml"]\n',
     "{tmp}/gone.toml (checks.score_files[0]): cannot read the score table"),
    ('[server]\nlog_file = "{tmp}/missing/scanner.log"\n' + NO_NETWORK,
     "'server.log_file' {tmp}/missing/scanner.log: the directory"),
])
def test_sighup_warns_when_the_next_start_would_fail_beyond_loading_the_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, edit: str, needle: str):
    """SIGHUP only loaded the edited file: a check setting, a score file or a path that
    start-up (and ``scanner config check``) refuses passed as "has changed since start;
    restart to apply it", and the restart then failed."""
    from scanner.config import load
    from scanner.serve.master import report_config_on_hup

    path = tmp_path / "scanner.toml"
    path.write_text(NO_NETWORK)
    config = load(str(path))
    path.write_text(edit.format(tmp=tmp_path))
    with caplog.at_level("WARNING", logger="scanner"):
        report_config_on_hup(config)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("SIGHUP: ") and needle.format(tmp=tmp_path) in line
    assert "still running with the configuration read at start" in line


def test_an_unexpected_error_while_checking_the_configuration_at_sighup_is_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """The SIGHUP check runs in the master's main loop: an exception other than a
    configuration error (a check's constructor failing some other way) must be logged,
    not raised into the master's loop, which would end the master."""
    from scanner.cli import config_cmd
    from scanner.config import load
    from scanner.serve.master import report_config_on_hup

    def broken(*args: object) -> None:
        raise RuntimeError("a check could not be built")

    path = tmp_path / "scanner.toml"
    path.write_text(NO_NETWORK)
    config = load(str(path))
    monkeypatch.setattr(config_cmd, "preflight", broken)
    with caplog.at_level("WARNING", logger="scanner"):
        report_config_on_hup(config)
    assert f"SIGHUP: checking {path} as a start would failed" in caplog.text
    assert "a check could not be built" in caplog.text


def test_config_check_reports_every_bad_policy_sql_row(tmp_path: Path):
    """An operator with thousands of rows learns of the bad ones before mail does: each
    is named with its key and the reason (serve leaves them out at message time); a
    table that cannot be read is a warning too (serve would defer mail). Exit 0: serve
    starts with such a table."""
    import sqlite3

    db = tmp_path / "policy.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings)")
        conn.executemany("INSERT INTO scanner_policy VALUES (?, ?)", [
            ("good@example.com", '{"spam_lover": true}'),
            ("a@example.com", '{"archive_directory": "relative/dir"}'),
            ("b@example.com", None),
            ("example.com", '{"spam_lover": true}'),
            ("A@example.com", '{"tag2_level": "high"}')])
    conn.close()
    config = tmp_path / "c.toml"
    config.write_text(NO_NETWORK + f'[policy]\nsql_lookup = "sqlite:{db}"\n')
    run = scanner("config", "check", str(config))
    no_traceback(run)
    err = run.stderr.decode()
    assert run.returncode == 0, err
    assert "row 'a@example.com': key 'archive_directory' ignored" in err
    assert "row 'b@example.com' ignored: settings must be a JSON object, got NULL" in err
    assert "'example.com' is not an address pattern" in err
    assert "rows 'A@example.com' and 'a@example.com' differ only in case" in err
    assert "row 'A@example.com': key 'tag2_level' ignored" in err
    assert "good@example.com" not in err
    db.unlink()
    run = scanner("config", "check", str(config))
    assert run.returncode == 0 and "policy SQL table cannot be read" in run.stderr.decode()
    assert "defers every message (451)" in run.stderr.decode()

"""Operator mistakes and bad input on the command line: each gives a message that names
what failed and an exit code from the README, never a traceback or a hang."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.errors import ConfigError
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

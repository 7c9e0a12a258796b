"""Operator mistakes and bad input on the command line: each gives a message that names
what failed and an exit code from the README, never a traceback or a hang."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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

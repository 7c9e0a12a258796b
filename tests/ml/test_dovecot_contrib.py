"""The Dovecot IMAPSieve files in contrib/dovecot compile and really teach the model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.ml.model import load_model
from tests.ml.conftest import synthetic_message

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib" / "dovecot"
SIEVEC = shutil.which("sievec")


@pytest.mark.skipif(SIEVEC is None, reason="sievec missing (Debian package dovecot-sieve)")
@pytest.mark.parametrize("script", ["report-spam.sieve", "report-ham.sieve"])
def test_sieve_scripts_compile_with_the_shipped_dovecot_settings(script: str,
                                                                 tmp_path: Path) -> None:
    conf = tmp_path / "dovecot.conf"
    conf.write_text(f"ssl = no\n!include {CONTRIB / '90-scanner-imapsieve.conf'}\n")
    shutil.copy(CONTRIB / script, tmp_path / script)
    done = subprocess.run([SIEVEC, "-c", str(conf), str(tmp_path / script)],  # type: ignore[list-item]
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / script).with_suffix(".svbin").exists()


def _dovecot_vsz_limit() -> None:
    """Dovecot's default_vsz_limit (256 MB), which its pipe programs run under."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (256 << 20, 256 << 20))


def test_learn_hook_script_updates_the_model(tmp_path: Path) -> None:
    """The hook, under Dovecot's default memory limit, learns into the model."""
    model = tmp_path / "site.model"
    shutil.copy(ROOT / "models" / "default.model", model)
    before = len(load_model(model).learned)
    scanner = tmp_path / "scanner"
    scanner.write_text(f"#!/bin/sh\nexec {sys.executable} -m scanner \"$@\"\n")
    scanner.chmod(0o755)
    env = {**os.environ, "SCANNER": str(scanner), "SCANNER_MODEL": str(model),
           "PYTHONPATH": str(ROOT)}
    for flag, seed in (("--spam", 1), ("--ham", 2)):
        done = subprocess.run([str(CONTRIB / "scanner-learn"), flag],
                              input=synthetic_message(flag == "--spam", seed), env=env,
                              capture_output=True, check=False, cwd=tmp_path,
                              preexec_fn=_dovecot_vsz_limit)
        assert done.returncode == 0, done.stderr.decode()
    assert len(load_model(model).learned) == before + 2

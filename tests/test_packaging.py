"""The package as pip installs it from a checkout (not editable) finds its shipped model.

A wheel is built from the checkout and installed into a fresh virtual environment;
Python there, started outside the checkout, must find ``models/default.model`` where the
wheel put it (``<venv>/share/scanner/models``), not next to the source tree.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from scanner.ml import shipped

REPO = Path(__file__).resolve().parents[1]


def test_checkout_model_comes_first() -> None:
    assert shipped.shipped_model_path() == REPO / "models" / "default.model"


def test_installed_copy_is_used_without_a_checkout(tmp_path, monkeypatch) -> None:
    installed = tmp_path / "share" / "scanner" / "models" / "default.model"
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"x")
    monkeypatch.setattr(shipped, "__file__", str(tmp_path / "lib" / "scanner" / "ml" / "x.py"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    assert shipped.shipped_model_path() == installed
    installed.unlink()  # neither exists: the error names the first place looked at
    assert shipped.shipped_model_path() == tmp_path / "lib" / "models" / "default.model"


def _site_packages() -> str:
    return sysconfig.get_path("purelib")


@pytest.mark.timeout(300)
def test_wheel_install_finds_the_shipped_model(tmp_path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
        capture_output=True, text=True, timeout=240)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("scanner-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True, timeout=120)
    # The project's dependencies come from the test environment's site-packages (on
    # PYTHONPATH, so its .pth files, among them the editable checkout's, are not read);
    # the package itself from the new environment.
    env = {**os.environ, "PYTHONPATH": _site_packages()}
    probe = ("import scanner, sys; from scanner.ml.shipped import shipped_model_path; "
             "from scanner.ml import load_model; p = shipped_model_path(); load_model(p); "
             "print(scanner.__file__); print(p)")
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    package_file, model = out.stdout.split()
    assert Path(package_file).is_relative_to(venv), package_file
    assert Path(model) == venv / "share" / "scanner" / "models" / "default.model"
    shipped_bytes = (REPO / "models" / "default.model").read_bytes()
    assert hashlib.sha256(Path(model).read_bytes()).digest() == \
        hashlib.sha256(shipped_bytes).digest()

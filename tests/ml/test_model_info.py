"""``scanner model info``: what a model file holds, read as the filter reads it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from scanner.cli import main
from tests.ml.conftest import synthetic_message


def info(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["model", "info", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_info_reports_training_learning_and_checksum(
        trained_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "copy.model"
    shutil.copyfile(trained_model_path, model)
    code, out, _ = info(capsys, "--model", str(model), "--json")
    assert code == 0
    facts = json.loads(out)
    assert (facts["trained_ham"], facts["trained_spam"]) == (60, 40)
    assert (facts["learned_ham"], facts["learned_spam"], facts["learned_remembered"]) == (0, 0, 0)
    assert facts["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert facts["hash_bits"] == 16 and 0 < facts["nonzero_weights"] <= 1 << 16
    message = tmp_path / "missed.eml"
    message.write_bytes(synthetic_message(True, 999))
    assert main(["learn", "--spam", str(message), "--model", str(model)]) == 0
    capsys.readouterr()
    code, out, _ = info(capsys, "--model", str(model), "--json")
    facts = json.loads(out)
    assert (facts["learned_ham"], facts["learned_spam"], facts["learned_remembered"]) == (0, 1, 1)
    assert facts["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    code, out, _ = info(capsys, "--model", str(model))
    assert code == 0
    assert "trained on:    60 ham, 40 spam" in out
    assert "learned since: 0 ham, 1 spam" in out and str(model) in out
    assert "autolearn:" not in out  # no spool: autolearn never queued anything here


def test_info_counts_the_autolearn_queue(trained_model_path: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from scanner.ml.autolearn_spool import fingerprint, write_record
    from scanner.ml.model import load_model, message_digest

    model_path = tmp_path / "site.model"
    shutil.copyfile(trained_model_path, model_path)
    model = load_model(model_path)
    for n in range(3):
        raw = synthetic_message(True, 500 + n)
        write_record(f"{model_path}.autolearn", message_digest(raw), True,
                     model.features(raw), fingerprint(model.settings))
    code, out, _ = info(capsys, "--model", str(model_path))
    assert code == 0
    assert f"autolearn:     3 message(s) queued in {model_path}.autolearn" in out
    code, out, _ = info(capsys, "--model", str(model_path), "--json")
    assert json.loads(out)["autolearn_queue"] == {"directory": f"{model_path}.autolearn",
                                                  "waiting": 3}


def test_info_on_the_shipped_model_by_default(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from scanner.ml.shipped import shipped_model_path

    config = tmp_path / "scanner.toml"
    config.write_text("")  # no [checks.settings.bayes] model: the shipped one
    monkeypatch.setenv("SCANNER_CONFIG", str(config))
    code, out, _ = info(capsys, "--json")
    assert code == 0
    facts = json.loads(out)
    assert Path(facts["path"]) == Path(shipped_model_path())
    assert facts["trained_ham"] > 0 and facts["trained_spam"] > 0


@pytest.mark.parametrize("content, says", [
    (None, "cannot read model file"),
    (b"From: not a model\n\n", "not a scanner spam model"),
    ("truncated", "truncated or corrupt"),
])
def test_a_bad_model_file_is_named(content: bytes | str | None, says: str,
                                   trained_model_path: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.model"
    if content == "truncated":
        path.write_bytes(trained_model_path.read_bytes()[:500])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    code, out, err = info(capsys, "--model", str(path))
    assert code == 1 and out == ""
    assert f"scanner model: {path}: " in err and says in err

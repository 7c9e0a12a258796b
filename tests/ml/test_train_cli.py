"""``scanner train`` / ``eval``: reproducibility, bad input, exit codes, --update."""

from __future__ import annotations

import json
import mailbox
import shutil
from pathlib import Path

import pytest

from scanner.cli.ml_commands import main
from scanner.ml.model import load_model
from tests.ml.conftest import CORPORA, synthetic_message, write_messages


def train(*args: str) -> int:
    return main(["train", "--quiet", "--jobs", "1", *args])


def test_train_is_byte_reproducible_across_formats_and_order(
        synthetic_corpus: tuple[Path, Path], settings_file: Path, tmp_path: Path) -> None:
    ham, spam = synthetic_corpus
    first, second, third = (tmp_path / f"{n}.model" for n in ("a", "b", "c"))
    assert train("--features", str(settings_file), "--ham", str(ham), "--spam", str(spam),
                 "--model", str(first)) == 0
    assert train("--features", str(settings_file), "--ham", str(ham), "--spam", str(spam),
                 "--model", str(second), "--jobs", "2") == 0
    assert first.read_bytes() == second.read_bytes()
    # The same mail as an mbox (ham) and a Maildir (spam), in another order: same model.
    box = mailbox.mbox(str(tmp_path / "ham.mbox"))
    for path in sorted(ham.iterdir(), reverse=True):
        box.add(path.read_bytes())
    box.close()
    maildir = mailbox.Maildir(str(tmp_path / "spam.maildir"))
    for path in sorted(spam.iterdir(), reverse=True):
        maildir.add(path.read_bytes())
    assert train("--features", str(settings_file), "--ham", str(tmp_path / "ham.mbox"),
                 "--spam", str(tmp_path / "spam.maildir"), "--model", str(third)) == 0
    assert third.read_bytes() == first.read_bytes()


def test_duplicates_and_unreadable_files_are_skipped(
        synthetic_corpus: tuple[Path, Path], settings_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    ham, spam = synthetic_corpus
    extra = tmp_path / "extra"
    shutil.copytree(ham, extra)
    (extra / "junk").write_bytes(b"\x00\x01binary junk\xff" * 100)
    model = tmp_path / "m.model"
    assert train("--features", str(settings_file), "--ham", str(ham), str(extra),
                 "--spam", str(spam), "--model", str(model)) == 0
    out = capsys.readouterr()
    assert "skipped" in out.err and "junk" in out.err
    assert "60 duplicates" in out.out
    assert load_model(model).training["ham"] == 60


def test_a_repeated_ham_or_spam_option_adds_its_paths(
        synthetic_corpus: tuple[Path, Path], settings_file: Path, tmp_path: Path) -> None:
    """``--ham A --ham B`` reads both folders, as ``--ham A B`` does (argparse's
    ``nargs="+"`` alone would keep only B, silently)."""
    ham, spam = synthetic_corpus
    halves = [tmp_path / "ham1", tmp_path / "ham2"]
    for index, path in enumerate(sorted(ham.iterdir())):
        halves[index % 2].mkdir(exist_ok=True)
        shutil.copy(path, halves[index % 2])
    repeated, listed = tmp_path / "repeated.model", tmp_path / "listed.model"
    assert train("--features", str(settings_file), "--ham", str(halves[0]),
                 "--ham", str(halves[1]), "--spam", str(spam), "--model", str(repeated)) == 0
    assert train("--features", str(settings_file), "--ham", str(ham), "--spam", str(spam),
                 "--model", str(listed)) == 0
    assert load_model(repeated).training["ham"] == 60
    assert repeated.read_bytes() == listed.read_bytes()


def test_one_class_or_nothing_readable_fails(
        synthetic_corpus: tuple[Path, Path], settings_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    ham, _ = synthetic_corpus
    model = tmp_path / "m.model"
    assert train("--features", str(settings_file), "--ham", str(ham),
                 "--model", str(model)) == 1
    assert "both ham and spam" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train("--ham", str(empty), "--spam", str(empty), "--model", str(model)) == 1
    assert "no readable messages" in capsys.readouterr().err
    assert train("--ham", str(tmp_path / "missing"), "--model", str(model)) == 1
    assert not model.exists()


def test_update_and_eval(trained_model_path: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.model"
    shutil.copy(trained_model_path, model)
    new_spam = write_messages(tmp_path / "new_spam", True, 10, start=1000)
    assert train("--update", "--spam", str(new_spam), "--model", str(model)) == 0
    updated = load_model(model)
    assert updated.training["online"]["spam"] == 10
    assert len(updated.learned) == 10
    assert model.read_bytes() != trained_model_path.read_bytes()
    # learning the same mail again changes nothing
    before = model.read_bytes()
    assert train("--update", "--spam", str(new_spam), "--model", str(model)) == 0
    assert load_model(model).training["online"]["spam"] == 10
    assert "10 duplicate" in capsys.readouterr().out
    assert before != b""
    held_ham = write_messages(tmp_path / "held_ham", False, 20, start=5000)
    held_spam = write_messages(tmp_path / "held_spam", True, 20, start=5000)
    assert main(["eval", "--quiet", "--jobs", "1", "--model", str(model), "--json",
                 "--ham", str(held_ham), "--spam", str(held_spam)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["ham"] == 20 and figures["spam"] == 20
    assert figures["roc_auc"] > 0.95
    assert set(figures["confusion"]) == {"tp", "fn", "fp", "tn"}


def test_eval_folds(synthetic_corpus: tuple[Path, Path], settings_file: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    ham, spam = synthetic_corpus
    assert main(["eval", "--quiet", "--jobs", "1", "--folds", "3", "--features",
                 str(settings_file), "--ham", str(ham), "--spam", str(spam)]) == 0
    text = capsys.readouterr().out
    assert "3-fold cross-validation" in text and "(1-ROCA)%" in text
    assert "at 0.1% FPR" in text and "threshold 0.9" in text


def test_eval_counts_what_reaches_the_configured_tag2_level(
        trained_model_path: Path, synthetic_corpus: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ham, spam = synthetic_corpus
    monkeypatch.delenv("SCANNER_CONFIG", raising=False)

    def figures(*config: str) -> dict:
        assert main(["eval", "--quiet", "--jobs", "1", "--model", str(trained_model_path),
                     "--json", "--ham", str(ham), "--spam", str(spam), *config]) == 0
        return json.loads(capsys.readouterr().out)

    (tmp_path / "empty.toml").write_text("")  # the shipped defaults
    shipped = figures("--config", str(tmp_path / "empty.toml"))
    tag2 = shipped["tag2"]
    assert tag2["level"] == 6.31 and tag2["tp"] + tag2["fn"] == 40
    # only BAYES_999 (5.5 + 1.0) reaches 6.31 alone with the shipped table
    assert tag2["tp"] + tag2["fp"] == shipped["bands"]["BAYES_999"]["spam"] \
        + shipped["bands"]["BAYES_999"]["ham"]
    scores = tmp_path / "site-scores.toml"
    scores.write_text("[symbols.BAYES_60]\nweight = 6.0\n[symbols.BAYES_80]\nweight = 6.0\n"
                      "[symbols.BAYES_95]\nweight = 6.0\n[symbols.BAYES_99]\nweight = 6.0\n"
                      "[symbols.BAYES_999]\nweight = 0.0\n")
    config = tmp_path / "site.toml"
    config.write_text(f'[policy]\ntag2_level = 5.0\n[checks]\nscore_files = ["{scores}"]\n')
    site = figures("--config", str(config))["tag2"]
    bands = shipped["bands"]
    above = ("BAYES_60", "BAYES_80", "BAYES_95", "BAYES_99", "BAYES_999")
    assert site["level"] == 5.0 and tag2["tp"] < site["tp"], (tag2, site)
    assert site["tp"] == sum(bands[b]["spam"] for b in above)
    assert site["fp"] == sum(bands[b]["ham"] for b in above)
    config.write_text("[policy]\ntag2_level = 'x'\n")
    assert main(["eval", "--quiet", "--model", str(trained_model_path), "--ham", str(ham),
                 "--config", str(config)]) == 2
    assert "'policy.tag2_level' must be a number" in capsys.readouterr().err


def test_bad_model_file_gives_clear_error(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    assert main(["eval", "--quiet", "--model", str(bad), "--ham", str(CORPORA)]) == 1
    assert str(bad) in capsys.readouterr().err
    message = tmp_path / "msg.eml"
    message.write_bytes(synthetic_message(True, 1))
    assert main(["learn", "--spam", str(message), "--model", str(bad)]) == 1
    assert "not a scanner spam model" in capsys.readouterr().err


def test_a_50_mb_message_is_read_truncated(synthetic_corpus: tuple[Path, Path],
                                           settings_file: Path, tmp_path: Path) -> None:
    ham, spam = synthetic_corpus
    big = tmp_path / "big"
    shutil.copytree(ham, big)
    line = b"all work and no play makes jack a dull boy " * 2 + b"\n"
    body = line * (50 * 1024 * 1024 // len(line))
    (big / "huge.eml").write_bytes(b"From: a@example.org\nSubject: huge\n\n" + body)
    model = tmp_path / "m.model"
    assert train("--features", str(settings_file), "--ham", str(big), "--spam", str(spam),
                 "--model", str(model)) == 0
    assert load_model(model).training["ham"] == 61

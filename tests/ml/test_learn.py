"""``scanner learn``: single messages, stdin, and concurrent learners."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.cli.ml_commands import main
from scanner.ml.learn import learn_message, model_lock
from scanner.ml.model import load_model
from tests.ml.conftest import REPO, synthetic_message


@pytest.fixture()
def model_copy(trained_model_path: Path, tmp_path: Path) -> Path:
    path = tmp_path / "live.model"
    shutil.copy(trained_model_path, path)
    return path


def test_learn_moves_the_score(model_copy: Path) -> None:
    raw = synthetic_message(False, 777).replace(b"Hi,", b"casino bonus lottery winner cash")
    before = load_model(model_copy).score_message(raw)
    assert learn_message(model_copy, raw, spam=True) == "learned"
    after = load_model(model_copy).score_message(raw)
    assert after > before
    assert learn_message(model_copy, raw, spam=True) == "duplicate"
    assert learn_message(model_copy, raw, spam=False) in ("learned", "unchanged")
    assert load_model(model_copy).score_message(raw) < after


def test_learn_from_stdin_and_empty_input(model_copy: Path) -> None:
    raw = synthetic_message(True, 4242)
    cmd = [sys.executable, "-m", "scanner.cli.ml_commands", "learn", "--spam",
           "--model", str(model_copy), "--verbose"]
    done = subprocess.run(cmd, input=raw, capture_output=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert b"as spam" in done.stderr
    empty = subprocess.run(cmd, input=b"", capture_output=True, cwd=REPO, check=False)
    assert empty.returncode == 1 and b"empty message" in empty.stderr


def test_lock_timeout(model_copy: Path) -> None:
    from scanner.ml.errors import ModelError

    with model_lock(model_copy), pytest.raises(ModelError, match="timed out"):
        learn_message(model_copy, synthetic_message(True, 1), spam=True, timeout=0.3)


def test_concurrent_learners_leave_a_valid_model(model_copy: Path, tmp_path: Path) -> None:
    processes = []
    for i in range(6):
        message = tmp_path / f"m{i}.eml"
        message.write_bytes(synthetic_message(i % 2 == 0, 9000 + i))
        label = "--spam" if i % 2 == 0 else "--ham"
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "scanner.cli.ml_commands", "learn", label, str(message),
             "--model", str(model_copy)], cwd=REPO, stderr=subprocess.PIPE))
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    model = load_model(model_copy)
    assert model.training["online"] == {"ham": 3, "spam": 3}
    assert len(model.learned) == 6
    leftovers = [p.name for p in model_copy.parent.iterdir() if p.suffix == ".tmp"]
    assert leftovers == []


def test_main_learn_with_file(model_copy: Path, tmp_path: Path) -> None:
    message = tmp_path / "one.eml"
    message.write_bytes(synthetic_message(False, 31337))
    assert main(["learn", "--ham", str(message), "--model", str(model_copy)]) == 0
    assert main(["learn", "--ham", str(tmp_path / "absent"), "--model", str(model_copy)]) == 1


def test_learn_and_train_default_to_the_configured_model(model_copy: Path, tmp_path: Path,
                                                          monkeypatch, capsys) -> None:
    """Without --model, learn (and train --update) work on the model the filter reads:
    [checks.settings.bayes] model of --config or $SCANNER_CONFIG, not the shipped file."""
    config = tmp_path / "scanner.toml"
    config.write_text(f'[checks.settings.bayes]\nmodel = "{model_copy}"\n')
    message = tmp_path / "one.eml"
    message.write_bytes(synthetic_message(True, 5150))
    before = model_copy.read_bytes()
    assert main(["learn", "--spam", str(message), "--config", str(config), "--verbose"]) == 0
    assert str(model_copy) in capsys.readouterr().err
    assert model_copy.read_bytes() != before
    monkeypatch.setenv("SCANNER_CONFIG", str(config))
    other = tmp_path / "two.eml"
    other.write_bytes(synthetic_message(False, 5151))
    learnt = model_copy.read_bytes()
    assert main(["train", "--update", "--ham", str(other), "--quiet"]) == 0
    assert str(model_copy) in capsys.readouterr().out
    assert model_copy.read_bytes() != learnt
    config.write_text("[checks.settings.bayes]\nmodel = 3\n")
    assert main(["learn", "--spam", str(message)]) == 2
    assert "checks.settings.bayes.model" in capsys.readouterr().err


def _limited(limit_bytes: int, umask: int = 0o022):  # type: ignore[no-untyped-def]
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
        os.umask(umask)
    return apply


def test_learn_runs_within_dovecots_default_memory_limit(model_copy: Path, tmp_path: Path
                                                         ) -> None:
    """Dovecot runs the IMAPSieve hook with vsz_limit 256 MB by default: learn must fit
    (reading the model with read(MAX_FILE_BYTES) reserved 256 MiB and failed)."""
    message = tmp_path / "one.eml"
    message.write_bytes(synthetic_message(True, 2718))
    # one BLAS thread, as contrib/dovecot/scanner-learn sets it (OpenBLAS reserves
    # memory per thread, so the headroom would otherwise depend on the core count)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "scanner", "learn", "--spam", "--model",
                           str(model_copy), str(message)], capture_output=True, cwd=REPO,
                          preexec_fn=_limited(256 << 20), timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_group_shared_model_stays_writable_for_the_group(model_copy: Path, tmp_path: Path
                                                           ) -> None:
    """docs/classifier.md shares the model with the mail users' group (0664): a learn
    under a strict umask keeps the model 0664 and makes the lock file 0664 too, so the
    next user can take it."""
    model_copy.chmod(0o664)
    message = tmp_path / "one.eml"
    message.write_bytes(synthetic_message(True, 2719))
    done = subprocess.run([sys.executable, "-m", "scanner", "learn", "--spam", "--model",
                           str(model_copy), str(message)], capture_output=True, cwd=REPO,
                          preexec_fn=_limited(4 << 30, umask=0o077), timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert model_copy.stat().st_mode & 0o777 == 0o664
    assert Path(f"{model_copy}.lock").stat().st_mode & 0o777 == 0o664


@pytest.mark.parametrize(("data", "reason"), [
    (__import__("gzip").compress(b"Subject: x\n\nbody\n"), b"a compressed file or archive"),
    (os.urandom(64).replace(b":", b"") + b"\x00junk", b"does not start with header lines"),
    (b"just a line of text\nand another\n", b"does not start with header lines"),
])
def test_learn_refuses_what_is_not_one_message(model_copy: Path, data: bytes,
                                               reason: bytes) -> None:
    before = model_copy.read_bytes()
    cmd = [sys.executable, "-m", "scanner.cli.ml_commands", "learn", "--spam",
           "--model", str(model_copy), "-"]
    done = subprocess.run(cmd, input=data, capture_output=True, cwd=REPO, check=False)
    assert done.returncode == 1 and reason in done.stderr and b"nothing learned" in done.stderr
    assert model_copy.read_bytes() == before


def test_learn_takes_a_message_after_an_mbox_from_line(model_copy: Path) -> None:
    raw = b"From alice@example.org Sat Dec  5 10:00:00 2026\n" + synthetic_message(True, 99)
    cmd = [sys.executable, "-m", "scanner.cli.ml_commands", "learn", "--spam",
           "--model", str(model_copy), "-"]
    done = subprocess.run(cmd, input=raw, capture_output=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(120)  # hang guard: a plain open of the FIFO waited for a writer for ever
def test_learn_and_scan_from_a_fifo_no_process_writes_to(model_copy: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    import scanner.bounded
    from scanner.cli.scan_cmd import read_input

    fifo = tmp_path / "msg"
    os.mkfifo(fifo)
    before = model_copy.read_bytes()
    monkeypatch.setattr(scanner.bounded, "FIFO_WAIT", 0.0)
    assert main(["learn", "--spam", str(fifo), "--model", str(model_copy)]) == 1
    assert f"{fifo}: cannot read (a pipe no process wrote to within 0 s)" in \
        capsys.readouterr().err
    assert model_copy.read_bytes() == before
    assert read_input(str(fifo)) is None
    assert f"cannot read {fifo}: a pipe no process wrote to" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_learn_from_a_fifo_a_process_writes_to_later(model_copy: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    import threading

    fifo = tmp_path / "msg"
    os.mkfifo(fifo)
    raw = synthetic_message(True, 31337)

    def writer() -> None:
        with open(fifo, "wb") as handle:  # waits for the reader, then writes
            handle.write(raw)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert main(["learn", "--spam", "--verbose", str(fifo), "--model", str(model_copy)]) == 0
    thread.join(60)
    assert "as spam" in capsys.readouterr().err


@pytest.mark.timeout(120)  # hang guard: a read of /proc/kmsg waits for the kernel to log
def test_learn_from_proc_kmsg_fails_without_hanging(model_copy: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    try:
        os.close(os.open("/proc/kmsg", os.O_RDONLY | os.O_NONBLOCK))
    except OSError:
        pytest.skip("/proc/kmsg cannot be opened here")
    assert main(["learn", "--spam", "/proc/kmsg", "--model", str(model_copy)]) == 1
    assert "/proc/kmsg: " in capsys.readouterr().err

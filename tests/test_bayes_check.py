"""The classifier check: bands from a trained model, hot reload without losing a message,
bad model files never replacing a good one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scanner.checks.base import CheckContext
from scanner.checks.bayes import Bayes, BayesSettings
from scanner.config import load
from scanner.errors import ConfigError
from scanner.ml import modelformat
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from scanner.testing.tasks import task_from_bytes
from tests.helpers import smtp, start_filter
from tests.ml.conftest import synthetic_message
from tests.test_failures import _children, _wait_children
from tests.test_lifecycle import _replace_worker


def _train(tmp: Path, name: str, inverted: bool = False) -> Path:
    ham, spam = tmp / f"{name}-ham", tmp / f"{name}-spam"
    ham.mkdir()
    spam.mkdir()
    for i in range(60):
        (ham / f"{i}.eml").write_bytes(synthetic_message(inverted, i))
        (spam / f"{i}.eml").write_bytes(synthetic_message(not inverted, i))
    out = tmp / f"{name}.model"
    subprocess.run([sys.executable, "-m", "scanner", "train", "--ham", str(ham), "--spam",
                    str(spam), "--model", str(out)], check=True, capture_output=True,
                   timeout=300)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    return _train(tmp, "normal"), _train(tmp, "inverted", inverted=True)


async def _inline(func, *args):
    return func(*args)


def _bands(check: Bayes, raw: bytes) -> list[str]:
    with task_from_bytes(raw) as task:
        return [h.symbol for h in asyncio.run(check.run(task))]


def test_bands_follow_the_model(models):
    normal, _ = models
    check = Bayes(BayesSettings(model=str(normal), reload_interval=0),
                  CheckContext(config=load(None), run_cpu=_inline))
    spam_bands = _bands(check, synthetic_message(True, 999))
    ham_bands = _bands(check, synthetic_message(False, 999))
    assert spam_bands[0] in ("BAYES_95", "BAYES_99")
    assert ham_bands[0] in ("BAYES_00", "BAYES_05")


def test_a_missing_shipped_model_is_reported_at_start(monkeypatch, tmp_path: Path, models):
    """The shipped model missing (a broken install) only turns the check off, so the
    start-up probe says so and what it means; with a model there is nothing to say."""
    import scanner.checks.bayes as bayes_module

    absent = tmp_path / "share" / "default.model"
    monkeypatch.setattr(bayes_module, "SHIPPED_MODEL", str(absent))
    context = CheckContext(config=load(None), run_cpu=_inline)
    problem = asyncio.run(Bayes(BayesSettings(), context).probe())
    assert problem is not None and str(absent) in problem and "BAYES_*" in problem
    normal, _ = models
    assert asyncio.run(Bayes(BayesSettings(model=str(normal)), context).probe()) is None


def test_missing_or_bad_model_is_a_config_error(tmp_path: Path):
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"\x93NUMPY not a model")
    for path in (tmp_path / "missing.model", bad):
        with pytest.raises(ConfigError, match=str(path)):
            Bayes(BayesSettings(model=str(path)), CheckContext(config=load(None),
                                                               run_cpu=_inline))


def test_reload_swaps_good_models_and_keeps_the_old_on_bad_ones(models, tmp_path, caplog):
    normal, inverted = models
    live = tmp_path / "live.model"
    shutil.copy(normal, live)
    check = Bayes(BayesSettings(model=str(live), reload_interval=0.01),
                  CheckContext(config=load(None), run_cpu=_inline))
    spam = synthetic_message(True, 5000)
    assert _bands(check, spam)[0] in ("BAYES_95", "BAYES_99")
    tmp = tmp_path / "new.model"
    tmp.write_bytes(live.read_bytes()[:100])  # a truncated file, atomically put in place
    os.replace(tmp, live)
    assert check.reload() is False
    assert _bands(check, spam)[0] in ("BAYES_95", "BAYES_99")  # old model kept
    assert "keeping the current model" in caplog.text
    shutil.copy(inverted, tmp)
    os.replace(tmp, live)
    assert check.reload() is True
    assert _bands(check, spam)[0] in ("BAYES_00", "BAYES_05")  # the new model is used


def _live_model_filter(model: Path, tmp_path: Path, reload_interval: float,
                       start_gate: Path | None = None):
    """A filter scoring with a copy of ``model`` (``live.model``, the classifier its only
    check): (the copy's path, the sink, the filter process, its port). ``start_gate``:
    a worker starting while that file exists waits after loading the model."""
    live = tmp_path / "live.model"
    shutil.copy(model, live)
    sink = Sink(free_port()).start()
    gate = (f'enabled = ["*", "fault_injection"]\n[checks.settings.fault_injection]\n'
            f'start_gate = "{start_gate}"\n' if start_gate else "")
    extra = ('\n[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "rules"]\n'
             f'{gate}[checks.settings.bayes]\nmodel = "{live}"\n'
             f'reload_interval = {reload_interval}\n[policy]\nspam_destiny = "pass"\n')
    proc, port = start_filter(tmp_path / "f", sink.port, extra=extra)
    return live, sink, proc, port


def test_running_filter_swaps_model_without_failing_a_message(models, tmp_path: Path):
    normal, inverted = models
    live, sink, proc, port = _live_model_filter(normal, tmp_path, 0.1)
    try:
        s = smtp(port)
        codes = []
        for i in range(30):
            if i == 10:
                tmp = tmp_path / "swap.model"
                shutil.copy(inverted, tmp)
                os.replace(tmp, live)
                _wait_for("the new model", lambda: "model reloaded" in
                          "\n".join(proc.log_lines()))
            code, _ = _send(s, synthetic_message(True, 7000 + i))
            codes.append(code)
        s.quit()
    finally:
        proc.stop()
        sink.stop()
    assert codes == [250] * 30
    lines = proc.summary_lines()
    assert len(lines) == 30
    hits = [float(ln.split("Hits: ")[1].split(",")[0]) for ln in lines]
    assert all(h >= 3.0 for h in hits[:10]), hits  # BAYES_95 or higher: old model
    assert all(h < 0 for h in hits[10:]), hits  # BAYES_00/05: the swapped-in model
    assert "model reloaded" in "\n".join(proc.log_lines())


def _send(s, raw: bytes) -> tuple[int, bytes]:
    s.mail("a@example.org")
    s.rcpt("b@example.test")
    return s.data(raw)


def test_a_new_worker_keeps_the_model_when_the_file_broke_after_start(models, tmp_path: Path):
    """The model file is damaged while the filter runs and then a worker is replaced
    (killed, max_requests, the watchdog): the new worker could not load the model, and
    a configured model that does not load stopped it at once, so every replacement
    crashed and no mail was served. It keeps the model read before, as SIGHUP does."""
    normal, _ = models
    live, sink, proc, port = _live_model_filter(normal, tmp_path, 0)
    try:
        s = smtp(port)
        assert _send(s, synthetic_message(True, 9000))[0] == 250
        s.quit()
        live.write_bytes(live.read_bytes()[:100])  # truncated in place
        worker = int(subprocess.run(["pgrep", "-P", str(proc.proc.pid)], capture_output=True,
                                    text=True, timeout=10).stdout.split()[0])
        os.kill(worker, signal.SIGKILL)
        s = smtp(port)  # waits for the replacement's greeting
        assert _send(s, synthetic_message(True, 9001))[0] == 250
        s.quit()
    finally:
        proc.stop()
        sink.stop()
    hits = [float(ln.split("Hits: ")[1].split(",")[0]) for ln in proc.summary_lines()]
    assert len(hits) == 2 and all(h >= 3.0 for h in hits), hits  # scored by the model
    log = "\n".join(proc.log_lines())
    assert "worker crashed" not in log and "Traceback" not in log
    assert f"keeping the model read before: {live}: " in log


def _hits(proc) -> list[float]:
    return [float(ln.split("Hits: ")[1].split(",")[0]) for ln in proc.summary_lines()]


def _wait_for(what: str, condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_sighup_while_a_worker_starts_reloads_its_model(models, tmp_path: Path):
    """A worker ignored SIGHUP until its loop's handler was installed, after it had
    loaded its checks: the reload asked for then (a new model file; here with the file
    watch off, so SIGHUP is the only way) was lost, and that worker scored with the old
    model until the next SIGHUP, without a word. The worker is held at a start gate,
    after the classifier loaded the model, while the model is replaced and it gets
    SIGHUP; its first message must be scored with the new model."""
    normal, inverted = models
    gate = tmp_path / "gate"
    live, sink, proc, port = _live_model_filter(normal, tmp_path, 0, start_gate=gate)
    try:
        [worker] = _wait_children(proc.proc.pid, 1)
        gate.touch()
        replacement = _replace_worker(proc.proc.pid, worker)
        waiting = tmp_path / f"gate.{replacement}"
        _wait_for("the new worker at the start gate", waiting.exists)
        tmp = tmp_path / "swap.model"
        shutil.copy(inverted, tmp)
        os.replace(tmp, live)
        os.kill(replacement, signal.SIGHUP)  # the master passes SIGHUP on like this
        gate.unlink()
        s = smtp(port)  # the new worker's greeting: it has started
        assert _send(s, synthetic_message(True, 9100))[0] == 250
        s.quit()
        assert _children(proc.proc.pid) == [replacement]  # SIGHUP did not end it
    finally:
        proc.stop()
        sink.stop()
    hits = _hits(proc)
    assert len(hits) == 1 and hits[0] < 0, hits  # BAYES_00/05: the new model
    log = "\n".join(proc.log_lines())
    assert "SIGHUP came while it started" in log and f"model reloaded from {live}" in log


def _writer_of(fifo: Path) -> int:
    """Open ``fifo`` for writing once a reader has it open (the worker's reload)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: nobody reads it yet
            assert time.monotonic() < deadline, "the reload never opened the model file"
            time.sleep(0.02)


def test_a_sighup_storm_during_a_slow_reload_neither_stops_serving_nor_piles_up(
        models, tmp_path: Path):
    """SIGHUP reloaded every check in the worker's event loop, once per signal: while
    the model file was read (here: a FIFO that holds the read until the test writes)
    the worker greeted no connection and beat no heartbeat, and a storm of SIGHUPs
    queued a full reload per signal, back to back in the loop, until the watchdog
    killed the worker with its open transactions. Now the reload runs in the thread
    pool, the worker serves meanwhile, and the 20 signals that come during it make one
    more reload, not 20. The held read gets one byte (a truncated file): that reload
    keeps the old model and says which file; the next one loads the new model."""
    normal, inverted = models
    live, sink, proc, port = _live_model_filter(normal, tmp_path, 0)
    fifo, link = tmp_path / "model.fifo", tmp_path / "link.model"
    try:
        [worker] = _wait_children(proc.proc.pid, 1)
        with smtp(port) as s:  # the worker serves: its start-up is over
            assert s.noop()[0] == 250
        os.mkfifo(fifo)
        os.link(fifo, link)
        os.replace(link, live)  # the model file is now the FIFO
        os.kill(worker, signal.SIGHUP)
        writer = _writer_of(fifo)  # the reload is reading the model file
        try:
            for _ in range(20):
                os.kill(worker, signal.SIGHUP)
            with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
                assert s.noop()[0] == 250  # served while the reload waits
            tmp = tmp_path / "swap.model"
            shutil.copy(inverted, tmp)
            os.replace(tmp, live)
            os.write(writer, b"\x85")
        finally:
            os.close(writer)
        _wait_for("the new model", lambda: "model reloaded" in "\n".join(proc.log_lines()))
        s = smtp(port)
        assert _send(s, synthetic_message(True, 9200))[0] == 250
        s.quit()
    finally:
        proc.stop()
        sink.stop()
    hits = _hits(proc)
    assert len(hits) == 1 and hits[0] < 0, hits  # scored with the new model
    log = "\n".join(proc.log_lines())
    assert log.count(f"keeping the current model: {live}: ") == 1
    assert log.count(f"model reloaded from {live}") == 1


def test_a_model_file_that_fails_in_an_unforeseen_way_is_a_bad_file_like_any_other(
        models, tmp_path: Path, caplog):
    """A model file with a valid checksum whose feature settings hold a value of the
    wrong type (block_weights a number) raised AttributeError, not ModelError: the file
    watch's reload let it out of the check, so the message being scored failed (451 by
    default) at every reload_interval, and a worker starting with it crashed. Now the
    old model stays and the error names the file; at start it is a configuration error."""
    normal, _ = models
    live = tmp_path / "live.model"
    shutil.copy(normal, live)
    check = Bayes(BayesSettings(model=str(live), reload_interval=0.01),
                  CheckContext(config=load(None), run_cpu=_inline))
    payload = modelformat.decode(normal.read_bytes(), str(normal))
    payload["feature_settings"]["block_weights"] = 5
    bad = tmp_path / "bad.model"
    bad.write_bytes(modelformat.encode(payload))
    shutil.copy(bad, tmp_path / "next.model")
    os.replace(tmp_path / "next.model", live)
    assert check.reload() is False
    spam = synthetic_message(True, 9300)
    assert _bands(check, spam)[0] in ("BAYES_95", "BAYES_99")  # the old model, no error
    assert f"keeping the current model: {live}: unusable model file (AttributeError" \
        in caplog.text
    with pytest.raises(ConfigError, match=f"{bad}: unusable model file"):
        Bayes(BayesSettings(model=str(bad)), CheckContext(config=load(None), run_cpu=_inline))


def test_sighups_while_messages_are_in_flight_fail_none(models, tmp_path: Path):
    """Four connections send while the model file is replaced (atomically) and the
    master gets ten SIGHUPs: every message is accepted and scored by a whole model, the
    old or the new one (never a failure or a mix), and mail after the reload gets the
    new one."""
    normal, inverted = models
    live, sink, proc, port = _live_model_filter(normal, tmp_path, 0)

    def client(n: int) -> list[int]:
        with smtp(port) as s:
            return [_send(s, synthetic_message(True, 10_000 + 100 * n + i))[0]
                    for i in range(10)]

    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            sending = [pool.submit(client, n) for n in range(4)]
            sink.wait_for(4)  # mail is flowing
            tmp = tmp_path / "swap.model"
            shutil.copy(inverted, tmp)
            os.replace(tmp, live)
            for _ in range(10):
                os.kill(proc.proc.pid, signal.SIGHUP)
            codes = [code for f in sending for code in f.result(timeout=120)]
        _wait_for("the new model", lambda: "model reloaded" in "\n".join(proc.log_lines()))
        with smtp(port) as s:
            assert _send(s, synthetic_message(True, 10_999))[0] == 250
    finally:
        proc.stop()
        sink.stop()
    assert codes == [250] * 40
    hits = _hits(proc)
    assert len(hits) == 41 and all(h >= 3.0 or h < 0 for h in hits), hits
    assert hits[-1] < 0, hits  # after the reload: the new model
    log = "\n".join(proc.log_lines())
    assert "failed" not in log and "Traceback" not in log


def swap_break_and_replace_a_worker(models, tmp_path: Path, interval: float,  # type: ignore[no-untyped-def]
                                    reload, seed: int, after_break=None):
    """A filter on the normal model; the inverted one put in place and reloaded
    (``reload(proc, live)``), then the file truncated (``after_break(proc)`` waited for)
    and the worker replaced; one spam sent to the new worker. The stopped filter and
    the model path, for the checks."""
    normal, inverted = models
    live, sink, proc, port = _live_model_filter(normal, tmp_path, interval)
    try:
        [worker] = _wait_children(proc.proc.pid, 1)
        with smtp(port) as s:
            assert s.noop()[0] == 250  # started
        tmp = tmp_path / "swap.model"
        shutil.copy(inverted, tmp)
        os.replace(tmp, live)
        reload(proc, live)
        live.write_bytes(live.read_bytes()[:100])  # truncated in place
        if after_break is not None:
            after_break(proc)
        _replace_worker(proc.proc.pid, worker)
        with smtp(port) as s:
            assert _send(s, synthetic_message(True, seed))[0] == 250
    finally:
        proc.stop()
        sink.stop()
    return live, proc


def test_a_worker_started_after_the_file_broke_keeps_the_model_of_the_last_sighup(
        models, tmp_path: Path):
    """A new model, put in place and reloaded by SIGHUP; then the file breaks and a worker
    is replaced: the replacement fell back to the model the master read at start-up
    (the one replaced long ago), so its mail alone was scored by the old model. The
    master now keeps what its SIGHUP check loaded."""
    def reload(proc, live: Path) -> None:  # type: ignore[no-untyped-def]
        os.kill(proc.proc.pid, signal.SIGHUP)
        _wait_for("the reloads", lambda: "model reloaded" in "\n".join(proc.log_lines())
                  and "SIGHUP: " in "\n".join(proc.log_lines()))

    live, proc = swap_break_and_replace_a_worker(models, tmp_path, 0, reload, 9400)
    hits = _hits(proc)
    assert len(hits) == 1 and hits[0] < 0, hits  # the model of the last SIGHUP
    log = "\n".join(proc.log_lines())
    assert f"keeping the model read before: {live}: " in log

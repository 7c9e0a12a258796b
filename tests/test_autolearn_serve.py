"""Autolearn in a running ``scanner serve``: a phish the rules catch and the shipped
model misses is queued by the worker, learnt into the site model file by the periodic
chore, and the reloaded model rates it higher; configuration errors name the key."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scanner.checks.base import CheckContext
from scanner.checks.bayes import Bayes, BayesSettings
from scanner.config import load
from scanner.errors import ConfigError
from scanner.ml.autolearn_spool import queued
from scanner.ml.model import load_model
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from tests.helpers import smtp, start_filter

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "default.model"
PHISH = REPO / "corpora" / "modern" / "spam-html-attachment.eml"
HAM = REPO / "corpora" / "modern" / "ham-personal-french.eml"


def _config(model: Path, **extra: object) -> str:
    lines = "".join(f"{k} = {v}\n" for k, v in extra.items())
    return ('\n[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl"]\n'
            f'[checks.settings.bayes]\nmodel = "{model}"\nreload_interval = 0.2\n'
            'autolearn = true\nautolearn_spam_above = 7.0\n'
            'autolearn_min_header_points = 0\nautolearn_min_body_points = 0\n'
            f'autolearn_interval = 1\n{lines}'
            '[policy]\nspam_destiny = "pass"\nbanned_destiny = "pass"\n'
            'tag_level = -999\n')


def _wait_for(what: str, condition, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _spam_status(data: bytes) -> str:
    """The X-Spam-Status field of a delivered copy, unfolded."""
    value = email.message_from_bytes(data)["X-Spam-Status"]
    return " ".join(str(value).split())


def _send(port: int, raw: bytes) -> None:
    s = smtp(port)
    try:
        s.sendmail("sender@example.org", ["user@example.test"], raw)
    finally:
        s.quit()


def test_a_caught_phish_is_learnt_and_the_reloaded_model_rates_it_higher(tmp_path: Path):
    model = tmp_path / "site.model"
    shutil.copy(SHIPPED, model)
    raw = PHISH.read_bytes()
    before = load_model(model).score_message(raw)
    sink = Sink(free_port()).start()
    proc, port = start_filter(tmp_path / "f", sink.port, extra=_config(model))
    try:
        _send(port, raw)
        _send(port, HAM.read_bytes())
        got = sink.wait_for(2)
        status = [_spam_status(r.data) for r in got]
        assert status[0].endswith("autolearn=spam"), status[0]
        assert status[1].endswith("autolearn=no"), status[1]  # ham learning is off
        _wait_for("the model file to learn it", lambda: load_model(model).training.get(
            "online", {}).get("spam") == 1)
        _wait_for("the workers to reload it",
                  lambda: "model reloaded" in "\n".join(proc.log_lines()))
        log = "\n".join(proc.log_lines())
        assert f"autolearn: 1 spam and 0 ham learnt into {model}" in log
        assert queued(str(model) + ".autolearn") == []
    finally:
        proc.stop()
        sink.stop()
    after = load_model(model)
    assert after.training["online"] == {"ham": 0, "spam": 1}
    assert after.score_message(raw) > before


def test_autolearn_off_says_disabled_and_queues_nothing(tmp_path: Path):
    model = tmp_path / "site.model"
    shutil.copy(SHIPPED, model)
    sink = Sink(free_port()).start()
    extra = _config(model).replace("autolearn = true", "autolearn = false")
    proc, port = start_filter(tmp_path / "f", sink.port, extra=extra)
    try:
        _send(port, PHISH.read_bytes())
        data = sink.wait_for(1)[0].data
    finally:
        proc.stop()
        sink.stop()
    assert _spam_status(data).endswith("autolearn=disabled")
    assert not (tmp_path / "site.model.autolearn").exists()
    assert model.read_bytes() == SHIPPED.read_bytes()


def test_autolearn_needs_a_site_model_and_a_writable_spool(tmp_path: Path):
    async def run_cpu(func, *args):  # type: ignore[no-untyped-def]
        return func(*args)

    context = CheckContext(config=load(None), run_cpu=run_cpu)
    with pytest.raises(ConfigError, match=r"\[checks.settings.bayes\] autolearn: needs a "
                                          r"site model"):
        Bayes(BayesSettings(autolearn=True), context)
    model = tmp_path / "site.model"
    shutil.copy(SHIPPED, model)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="autolearn_spool: .*file: exists and is not a "
                                          "directory"):
        Bayes(BayesSettings(model=str(model), autolearn=True,
                            autolearn_spool=str(tmp_path / "file" / "spool")), context)
    check = Bayes(BayesSettings(model=str(model), autolearn=True), context)
    assert check.housekeeping_interval == 60.0
    assert not (tmp_path / "site.model.autolearn").exists()  # made by the first message


def test_config_check_names_the_key(tmp_path: Path):
    config = tmp_path / "scanner.toml"
    config.write_text('[checks.settings.bayes]\nautolearn = true\n')
    done = subprocess.run([sys.executable, "-m", "scanner", "config", "check", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{config}: [checks.settings.bayes] autolearn: needs a site model" in done.stderr


def test_a_full_spool_queues_no_more(tmp_path: Path, monkeypatch, caplog):
    """A model that cannot be written keeps its queue; the queue stops growing at
    MAX_QUEUED files (an error logged once), and queues again once there is room."""
    import asyncio

    from scanner.checks import bayes as bayes_module
    from scanner.testing.tasks import task_from_bytes

    monkeypatch.setattr(bayes_module, "MAX_QUEUED", 2)
    monkeypatch.setattr(bayes_module, "SPOOL_LOOK_INTERVAL", 0.0)

    async def run_cpu(func, *args):  # type: ignore[no-untyped-def]
        return func(*args)

    model = tmp_path / "site.model"
    shutil.copy(SHIPPED, model)
    check = Bayes(BayesSettings(model=str(model), autolearn=True),
                  CheckContext(config=load(None), run_cpu=run_cpu))

    def queue(n: int) -> bool:
        raw = PHISH.read_bytes().replace(b"Subject: ", f"Subject: {n} ".encode(), 1)
        with task_from_bytes(raw) as task:
            asyncio.run(check.run(task))
            task.autolearn = "spam"
            return check.queue_for_learning(task)

    assert [queue(n) for n in range(4)] == [True, True, False, False]
    assert len(queued(str(model) + ".autolearn")) == 2
    assert sum("no more are queued" in r.getMessage() for r in caplog.records) == 1
    check.housekeeping()
    assert queued(str(model) + ".autolearn") == [] and queue(5)

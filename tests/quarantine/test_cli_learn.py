"""``scanner quarantine release --learn-ham`` and ``delete --learn-spam``: the feedback
for the spam model given in the step that releases or removes a message."""

from __future__ import annotations

import shutil
from pathlib import Path

from scanner import config as cfgmod
from scanner.quarantine.store import Quarantine
from scanner.testing.sink import Sink

from .test_cli import cli
from .util import REPO, config_text, store


def _site_model(tmp_path: Path, sink: Sink) -> tuple[Path, Path]:
    """A configuration whose spam model is a copy of the shipped one: (config, model)."""
    model = tmp_path / "site.model"
    shutil.copyfile(REPO / "models" / "default.model", model)
    config = tmp_path / "learning.toml"
    config.write_text(config_text(tmp_path / "q", sink.port,
                                  extra=f'\n[checks.settings.bayes]\nmodel = "{model}"\n'),
                      encoding="utf-8")
    return config, model


def _online(model: Path) -> dict:
    from scanner.ml.model import load_model

    return dict(load_model(model).training.get("online", {}))


def test_release_learn_ham_and_delete_learn_spam_feed_the_model(tmp_path: Path,
                                                                 sink: Sink):
    """A false positive released with --learn-ham is learned as ham into the model the
    filter uses; a held message deleted with --learn-spam as spam first. The message
    learned is the one received, as the filter scanned it."""
    config, model = _site_model(tmp_path, sink)
    q = Quarantine(cfgmod.load(str(config)).quarantine)
    ham, spam = store(q, subject="our newsletter"), store(q, subject="cheap pills")
    out = cli(config, "release", ham.mail_id, "--learn-ham")
    assert out.returncode == 0, out.stderr
    assert f"{model}: {ham.mail_id} learned as ham" in out.stdout.decode()
    assert sink.wait_for(1)[0].recipients == ["bob@example.test"]
    assert _online(model) == {"ham": 1, "spam": 0}
    out = cli(config, "delete", spam.mail_id, "--learn-spam")
    assert out.returncode == 0, out.stderr
    assert f"{model}: {spam.mail_id} learned as spam" in out.stdout.decode()
    assert _online(model) == {"ham": 1, "spam": 1} and q.index.get(spam.mail_id) is None


def test_a_model_that_cannot_learn_is_reported_and_nothing_is_lost(tmp_path: Path,
                                                                   sink: Sink):
    """The release has happened when learning fails: exit 1 saying so. A delete whose
    learning fails deletes nothing."""
    config, model = _site_model(tmp_path, sink)
    model.write_bytes(b"not a model")
    q = Quarantine(cfgmod.load(str(config)).quarantine)
    ham, spam = store(q, subject="our newsletter"), store(q, subject="cheap pills")
    out = cli(config, "release", ham.mail_id, "--learn-ham")
    err = out.stderr.decode()
    assert out.returncode == 1 and f"{ham.mail_id} not learned as ham: " in err
    assert f"{ham.mail_id} was released, but not learned as ham" in err
    assert len(sink.wait_for(1)) == 1 and q.get(ham.mail_id).state == "released"
    out = cli(config, "delete", spam.mail_id, "--learn-spam")
    assert out.returncode == 1 and b"not learned as spam (see above), so not deleted" in \
        out.stderr
    assert q.get(spam.mail_id).state == "held"

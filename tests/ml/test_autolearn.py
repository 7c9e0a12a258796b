"""Autolearn: which messages the classifier learns on its own (scanner.ml.autolearn),
the queue of their features and learning it into a model file
(scanner.ml.autolearn_spool)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import msgpack
import numpy as np
import pytest

from scanner.ml.autolearn import Thresholds, decide
from scanner.ml.autolearn_spool import (
    apply_spool,
    fingerprint,
    queued,
    read_record,
    write_record,
)
from scanner.ml.errors import ModelError
from scanner.ml.features import FeatureSettings
from scanner.ml.learn import model_lock
from scanner.ml.model import load_model, message_digest
from scanner.scores import ScoreTable, SymbolDef
from scanner.task import Hit
from tests.ml.conftest import synthetic_message

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "default.model"

AREAS = {"H3": "header", "H1": "header", "B3": "body", "B6": "body", "META": None,
         "GTUBE_LIKE": "ignore"}


def _table() -> ScoreTable:
    weights = {"H3": 3.0, "H1": 1.0, "B3": 3.0, "B6": 6.0, "META": 2.0, "GTUBE_LIKE": 1000.0,
               "LOW": 0.05, "BAYES_99": 5.5, "BAYES_50": 0.8, "BAYES_00": -1.9,
               "BAYES_40": -0.001, "PENPALS_REPLY": -3.0, "CLAMAV_FAIL": 0.0,
               "ClamAV_VIRUS": 0.0}
    return ScoreTable({s: SymbolDef(weight=w) for s, w in weights.items()}, SymbolDef())


def _hits(*symbols: str, bayes: str = "BAYES_50") -> list[Hit]:
    hits = [Hit(s, source="rules") for s in symbols]
    return hits + [Hit(bayes, source="bayes")] if bayes else hits


def _decide(hits: list[Hit], **thresholds: float | bool):
    return decide(hits, _table(), lambda h: AREAS.get(h.symbol), Thresholds(**thresholds))


def test_spam_needs_the_points_and_with_minimums_both_areas():
    d = _decide(_hits("H3", "B6"))
    assert (d.label, d.points, d.header, d.body, d.learner) == ("spam", 9.0, 3.0, 6.0, 0.8)
    assert _decide(_hits("H3", "B3")).reason == "between the thresholds"  # 6 < 8
    assert _decide(_hits("B6", "B3")).label == "spam"  # no minimums by default
    sa = {"min_header_points": 3.0, "min_body_points": 3.0}  # SpamAssassin's
    assert _decide(_hits("B6", "B3"), **sa).reason == "too few header points"
    assert _decide(_hits("H3", "META", "B3"), spam_above=7.0, **sa).label == "spam"
    assert _decide(_hits("H3", "H3", "META"), spam_above=7.0, **sa).reason == \
        "too few body points"


def test_the_classifier_and_recipient_hits_are_no_points():
    d = _decide(_hits("H1", "B6", bayes="BAYES_99"))
    assert d.points == 7.0 and d.learner == 5.5 and d.label == "no"
    penpal = Hit("PENPALS_REPLY", source="penpals")
    just_one = Hit("H3", source="rules", recipient="a@example.test")
    assert _decide([*_hits("H3", "B6"), penpal, just_one]).points == 9.0


def test_the_classifier_must_not_contradict_the_label():
    assert _decide(_hits("H3", "B6", bayes="BAYES_00")).reason == "the classifier says ham"
    assert _decide(_hits("LOW", bayes="BAYES_40"), ham=True).label == "ham"
    assert _decide(_hits("LOW", bayes="BAYES_50"), ham=True).reason == \
        "the classifier leans spam"
    assert _decide(_hits(bayes="BAYES_00")).label == "no"  # ham learning is off by default
    assert _decide(_hits("H3", "B6", bayes="")).reason == "no classifier score"


def test_noautolearn_rules_incomplete_and_infected_mail_are_never_learnt():
    assert _decide(_hits("GTUBE_LIKE", "H1", "B3")).points == 4.0
    assert _decide(_hits("GTUBE_LIKE", "H1", "B3")).label == "no"
    failed = [*_hits("H3", "B6"), Hit("CLAMAV_FAIL", source="clamav")]
    assert _decide(failed).reason == "incomplete analysis (CLAMAV_FAIL)"
    virus = [*_hits("H3", "B6"), Hit("ClamAV_VIRUS", options=("Eicar",), source="clamav")]
    assert _decide(virus).reason == "infected or banned"
    timed_out = [*_hits(bayes="BAYES_00"), Hit("RULES_TIMEOUT", source="rules")]
    assert _decide(timed_out, ham=True).label == "no"


def test_the_shipped_rules_flag_gtube_and_split_areas():
    from scanner.rules.loader import load_rules

    rs = load_rules()
    assert rs.by_name["SC_GTUBE"].noautolearn
    kinds = {r.kind for r in rs.by_name.values() if not r.noautolearn}
    assert {"header", "body", "meta"} <= kinds


# -- the spool ------------------------------------------------------------------------

@pytest.fixture()
def site(tmp_path: Path) -> Path:
    """A writable copy of the shipped model."""
    path = tmp_path / "site.model"
    shutil.copy(SHIPPED, path)
    return path


def _queue(model_path: Path, spool: Path, raw: bytes, spam: bool) -> str:
    model = load_model(model_path)
    return write_record(str(spool), message_digest(raw), spam, model.features(raw),
                        fingerprint(model.settings))


def test_queued_messages_are_learnt_into_the_model_file(site: Path, tmp_path: Path):
    spool = tmp_path / "spool"
    before = load_model(site)
    raws = [synthetic_message(True, 900 + i) for i in range(3)]
    for raw in raws:
        _queue(site, spool, raw, True)
    _queue(site, spool, raws[0], True)  # the same message again: the same file
    assert len(queued(str(spool))) == 3
    done = apply_spool(str(site), str(spool))
    assert done is not None and done.spam + done.unchanged == 3 and not done.damaged
    after = load_model(site)
    assert after.training["online"]["spam"] == before.training.get("online", {}).get(
        "spam", 0) + 3
    assert queued(str(spool)) == []
    if done.spam:
        assert not np.array_equal(before.weights, after.weights)
    assert apply_spool(str(site), str(spool)) is None  # nothing queued


def test_a_learnt_message_moves_the_model_its_way(site: Path, tmp_path: Path):
    raw = (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: zqxv plorb\r\n\r\n"
           + b"zqxv plorb wexlut frambozzle " * 20 + b"\r\n")
    model = load_model(site)
    before = model.decision(model.features(raw))
    _queue(site, tmp_path / "spool", raw, True)
    apply_spool(str(site), str(tmp_path / "spool"))
    after = load_model(site)
    assert after.decision(after.features(raw)) > before


def test_damaged_and_stale_records_are_dropped(site: Path, tmp_path: Path):
    spool = tmp_path / "spool"
    _queue(site, spool, synthetic_message(True, 1), True)
    (spool / ("ab" * 32 + ".spam")).write_bytes(b"\x00not msgpack")
    other = FeatureSettings(char_ngram=3)
    raw = synthetic_message(False, 2)
    write_record(str(spool), message_digest(raw), False, load_model(site).features(raw),
                 fingerprint(other))
    done = apply_spool(str(site), str(spool))
    assert done is not None
    assert (done.stale, len(done.damaged)) == (1, 1)
    assert queued(str(spool)) == []


def test_a_busy_model_leaves_the_queue_for_the_next_run(site: Path, tmp_path: Path):
    spool = tmp_path / "spool"
    _queue(site, spool, synthetic_message(True, 3), True)
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with model_lock(site):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    held.wait(10)
    try:
        assert apply_spool(str(site), str(spool)) is None
        assert len(queued(str(spool))) == 1
    finally:
        release.set()
        thread.join()
    assert apply_spool(str(site), str(spool)) is not None


def test_an_unwritable_model_keeps_the_queue(site: Path, tmp_path: Path):
    spool = tmp_path / "spool"
    _queue(site, spool, synthetic_message(True, 4), True)
    _queue(site, spool, synthetic_message(True, 5), True)
    bad = tmp_path / "missing" / "site.model"
    with pytest.raises(ModelError, match="missing"):
        apply_spool(str(bad), str(spool))
    assert len(queued(str(spool))) == 2


def test_a_record_holds_hashed_features_only(site: Path, tmp_path: Path):
    raw = synthetic_message(True, 6)
    path = _queue(site, tmp_path / "spool", raw, True)
    assert os.stat(tmp_path / "spool").st_mode & 0o777 == 0o700
    data = Path(path).read_bytes()
    assert b"Subject" not in data and raw[-40:] not in data
    obj = msgpack.unpackb(data)
    assert sorted(obj) == ["digest", "fp", "i", "spam", "v", "x"]
    record = read_record(path)
    model = load_model(site)
    indices, values = model.features(raw)
    assert np.array_equal(record.features[0], indices)
    assert np.allclose(record.features[1], values)
    assert Path(path).name == message_digest(raw).hex() + ".spam"

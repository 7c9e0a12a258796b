"""The shipped model (models/default.model) loads, validates and tells ham from spam."""

from __future__ import annotations

import pytest

from scanner.cli.ml_commands import DEFAULT_MODEL_PATH
from scanner.ml.bands import band_for
from scanner.ml.model import load_model
from tests.ml.conftest import CORPORA, REPO


def test_default_path_points_into_the_repository() -> None:
    assert DEFAULT_MODEL_PATH == REPO / "models" / "default.model"


def test_shipped_model_scores_our_samples() -> None:
    if not DEFAULT_MODEL_PATH.exists():
        pytest.skip("models/default.model has not been trained yet")
    model = load_model(DEFAULT_MODEL_PATH)
    assert DEFAULT_MODEL_PATH.stat().st_size < 4 << 20
    ham = model.score_message((CORPORA / "ham-plain.eml").read_bytes(),
                              client_name="mail.example.org", client_addr="203.0.113.5")
    spam = model.score_message((CORPORA / "spam-html.eml").read_bytes(),
                               client_name="unknown", client_addr="198.51.100.7")
    assert spam > ham
    assert band_for(ham) in ("BAYES_00", "BAYES_05", "BAYES_20", "BAYES_40")
    assert band_for(spam) in ("BAYES_80", "BAYES_95", "BAYES_99", "BAYES_999")
    assert model.training["ham"] == 4150 and model.training["spam"] == 1896


def test_shipped_model_on_modern_style_mail() -> None:
    """Mail unlike the 2002 training corpus: ordinary HTML ham must not look like spam."""
    model = load_model(DEFAULT_MODEL_PATH)
    modern = CORPORA / "modern"
    scores = {p.name: model.score_message(p.read_bytes()) for p in sorted(modern.glob("*.eml"))}
    ham = {n: s for n, s in scores.items() if n.startswith("ham-")}
    spam = {n: s for n, s in scores.items() if n.startswith("spam-")}
    assert len(ham) == 3 and len(spam) == 2
    assert all(s < 0.5 for s in ham.values()), scores
    assert all(s > 0.8 for s in spam.values()), scores
    assert min(spam.values()) > max(ham.values())


def test_shipped_model_on_mail_in_other_languages() -> None:
    """Personal mail in languages without ham in the corpus: uncertain at worst, never spam."""
    model = load_model(DEFAULT_MODEL_PATH)
    scores = {p.name: model.score_message(p.read_bytes())
              for p in sorted((CORPORA / "intl").glob("*.eml"))}
    assert len(scores) == 7
    assert all(s < 0.9 for s in scores.values()), scores  # at most BAYES_80

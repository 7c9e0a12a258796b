"""The blended learner (SVM + NB-SVM + SGD): valid options, one linear model, reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scanner.cli.ml_commands import main
from scanner.ml.corpus import read_corpus
from scanner.ml.features import FeatureSettings
from scanner.ml.model import load_model
from scanner.ml.train import TrainOptions, _log_count_ratio, fit_linear

BLEND = "hash_bits = 16\n[trainer]\ncalibration_folds = 3\nnb_weight = 0.3\nsgd_weight = 0.3\n"


@pytest.mark.parametrize("bad", [{"nb_weight": -0.1}, {"nb_weight": 0.6, "sgd_weight": 0.4},
                                 {"nb_alpha": 0.0}])
def test_bad_blend_options_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="nb_weight"):
        TrainOptions.from_dict(bad)


def test_log_count_ratio_points_to_the_class_a_feature_belongs_to() -> None:
    from scipy.sparse import csr_matrix

    X = csr_matrix(np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))
    ratio = _log_count_ratio(X, np.array([0, 0, 1]), 0.1)
    assert ratio[0] < 0 < ratio[1]  # feature 0 only in ham, feature 1 only in spam
    assert abs(ratio[2]) < abs(ratio[0])


def test_blend_separates_and_differs_from_the_plain_svm(
        synthetic_corpus: tuple[Path, Path], small_settings: FeatureSettings) -> None:
    ham, spam = synthetic_corpus
    settings = small_settings
    corpus = read_corpus([str(ham)], [str(spam)], settings, jobs=1)
    plain, _ = fit_linear(corpus, settings, TrainOptions())
    blend, bias = fit_linear(corpus, settings, TrainOptions(nb_weight=0.3, sgd_weight=0.3))
    assert not np.allclose(plain, blend)
    decisions = np.array([float(np.dot(blend[i], v)) + bias for i, v in corpus.rows])
    assert (decisions[corpus.labels == 1].min() > decisions[corpus.labels == 0].max())


def test_blend_training_is_byte_reproducible(synthetic_corpus: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    ham, spam = synthetic_corpus
    settings = tmp_path / "blend.toml"
    settings.write_text(BLEND)
    models = [tmp_path / "a.model", tmp_path / "b.model"]
    for model in models:
        assert main(["train", "--quiet", "--jobs", "1", "--features", str(settings),
                     "--ham", str(ham), "--spam", str(spam), "--model", str(model)]) == 0
    assert models[0].read_bytes() == models[1].read_bytes()
    assert "NB-SVM" in load_model(models[0]).training["learner"]

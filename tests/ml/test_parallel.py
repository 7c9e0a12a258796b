"""Fitting in several processes gives exactly what one process gives."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scanner.ml.corpus import read_corpus
from scanner.ml.evaluate import cross_validate
from scanner.ml.features import FeatureSettings
from scanner.ml.parallel import fork_map
from scanner.ml.train import TrainOptions, fit_model


def _pid_and_square(state: int, item: int) -> tuple[int, int]:
    return os.getpid(), state + item * item


def test_fork_map_returns_every_result_once_from_other_processes() -> None:
    results = dict(fork_map(_pid_and_square, 100, [1, 2, 3, 4, 5], jobs=2))
    assert {i: value for i, (_, value) in results.items()} == {
        0: 101, 1: 104, 2: 109, 3: 116, 4: 125}
    assert os.getpid() not in {pid for pid, _ in results.values()}
    alone = dict(fork_map(_pid_and_square, 100, [1, 2], jobs=1))
    assert {pid for pid, _ in alone.values()} == {os.getpid()}


def test_model_and_cross_validation_do_not_depend_on_the_processes(
        synthetic_corpus: tuple[Path, Path], small_settings: FeatureSettings) -> None:
    ham, spam = synthetic_corpus
    corpus = read_corpus([str(ham)], [str(spam)], small_settings, jobs=1)
    options = TrainOptions(nb_weight=0.33, sgd_weight=0.33)
    one = fit_model(corpus, small_settings, options, jobs=1).to_bytes()
    two = fit_model(corpus, small_settings, options, jobs=2).to_bytes()
    assert one == two
    folds = [cross_validate(corpus, small_settings, options, 4, jobs=j) for j in (1, 3)]
    assert np.array_equal(folds[0], folds[1])
    assert 0 < folds[0].min() < folds[0].max() < 1  # real probabilities, not a constant

"""Platt scaling and the SVM's probability outputs."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.ml.calibration import Calibration, fit_platt
from scanner.ml.evaluate import recall_at_fpr, roc_auc


def test_platt_recovers_a_sigmoid() -> None:
    rng = np.random.default_rng(0)
    decisions = rng.normal(size=4000) * 3
    truth = 1 / (1 + np.exp(-2.0 * decisions + 0.5))
    labels = (rng.random(4000) < truth).astype(int)
    fitted = fit_platt(decisions, labels)
    assert fitted.a == pytest.approx(-2.0, abs=0.3)
    assert fitted.b == pytest.approx(0.5, abs=0.3)


def test_probability_is_overflow_safe() -> None:
    calibration = Calibration(a=-5.0, b=0.0)
    assert calibration.probability(1e6) == 1.0
    assert calibration.probability(-1e6) == 0.0
    values = calibration.probabilities(np.array([-1e6, 0.0, 1e6]))
    assert values.tolist() == [0.0, 0.5, 1.0]


def test_metrics() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1])
    assert roc_auc(labels, np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9])) == 1.0
    assert roc_auc(labels, np.array([0.5] * 6)) == 0.5
    scores = np.array([0.1, 0.2, 0.3, 0.95, 0.9, 0.99])
    assert recall_at_fpr(labels, scores, 0.0) == 0.5
    assert recall_at_fpr(labels, scores, 0.25) == 1.0


def test_one_class_calibration_is_refused() -> None:
    with pytest.raises(ValueError):
        fit_platt(np.array([1.0, 2.0]), np.array([1, 1]))


def test_last_bit_noise_in_the_decisions_does_not_change_the_fit() -> None:
    """What another CPU's numpy kernels do to the decisions leaves the stored fit alone."""
    rng = np.random.default_rng(1)
    decisions = rng.normal(size=3000) * 2
    labels = (rng.random(3000) < 1 / (1 + np.exp(-3.0 * decisions))).astype(int)
    fitted = fit_platt(decisions, labels)
    assert (round(fitted.a, 5), round(fitted.b, 5)) == (fitted.a, fitted.b)
    noisy = decisions * (1 + rng.normal(size=3000) * 1e-12)
    assert fit_platt(noisy, labels) == fitted

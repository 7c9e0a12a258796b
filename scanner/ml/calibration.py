"""Platt scaling: map a linear model's decision value to a spam probability.

``p = 1 / (1 + exp(a * f + b))``, fitted by Newton's method with backtracking on
Platt's smoothed targets (Lin, Lin and Weng's formulation), in plain numpy so that the
result is deterministic and needs no scikit-learn object at scoring time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Calibration:
    """The two Platt parameters; ``a`` is negative when higher decisions mean spam."""

    a: float = -1.0
    b: float = 0.0

    def probability(self, decision: float) -> float:
        """The calibrated spam probability of one decision value (overflow-safe)."""
        z = self.a * decision + self.b
        if z >= 0:
            e = math.exp(-z) if z < 745 else 0.0
            return e / (1.0 + e)
        return 1.0 / (1.0 + math.exp(z))

    def probabilities(self, decisions: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`probability`."""
        z = self.a * np.asarray(decisions, dtype=np.float64) + self.b
        out = np.empty_like(z)
        pos = z >= 0
        e = np.exp(-z[pos])
        out[pos] = e / (1.0 + e)
        out[~pos] = 1.0 / (1.0 + np.exp(z[~pos]))
        return out


def fit_platt(decisions: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> Calibration:
    """Fit Platt scaling to decision values and 0/1 labels (1 = spam)."""
    f = np.asarray(decisions, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("calibration needs both classes")
    t = np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    a, b = 0.0, math.log((n_neg + 1.0) / (n_pos + 1.0))
    sigma, eps = 1e-12, 1e-5

    def objective(a_: float, b_: float) -> float:
        z = a_ * f + b_
        return float(np.sum(np.where(z >= 0, t * z + np.log1p(np.exp(-z)),
                                     (t - 1.0) * z + np.log1p(np.exp(z)))))

    value = objective(a, b)
    for _ in range(max_iter):
        z = a * f + b
        p = np.where(z >= 0, np.exp(-z) / (1.0 + np.exp(-z)), 1.0 / (1.0 + np.exp(z)))
        q = 1.0 - p
        d2 = p * q
        h11 = sigma + float(np.dot(f * f, d2))
        h22 = sigma + float(np.sum(d2))
        h21 = float(np.dot(f, d2))
        d1 = t - p
        g1 = float(np.dot(f, d1))
        g2 = float(np.sum(d1))
        if abs(g1) < eps and abs(g2) < eps:
            break
        det = h11 * h22 - h21 * h21
        da = -(h22 * g1 - h21 * g2) / det
        db = -(-h21 * g1 + h11 * g2) / det
        gd = g1 * da + g2 * db
        step = 1.0
        while step >= 1e-10:
            new_a, new_b = a + step * da, b + step * db
            new_value = objective(new_a, new_b)
            if new_value < value + 1e-4 * step * gd:
                a, b, value = new_a, new_b, new_value
                break
            step /= 2.0
        else:
            break
    return Calibration(a=_stable(a), b=_stable(b))


def _stable(value: float) -> float:
    """``value`` rounded to 5 decimal places.

    numpy picks its exp/log and reduction kernels by CPU (AVX-512 or not), so the last
    digits of the fitted parameters differ between machines (seen: 7e-8 on ``a`` and
    3e-8 on ``b`` for the shipped model), and with them the model file's bytes.
    Rounding makes the file the same on any machine unless a parameter lands within
    that noise of a rounding boundary (under 1 % here); a logit moves by at most about
    1e-5, a probability by less than 1e-5.
    """
    return round(value, 5)

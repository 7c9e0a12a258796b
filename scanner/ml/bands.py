"""SpamAssassin-style BAYES_* bands for a spam probability.

The boundaries are SpamAssassin's (``23_bayes.cf``): a band ``(low, high]`` matches when
``low < p <= high``, with the lowest band including 0. SpamAssassin fires BAYES_999 *in
addition to* BAYES_99 above 0.999; :func:`band_for` returns the single most specific band,
:func:`bands_for` returns every band SpamAssassin would fire.
"""

from __future__ import annotations

import math

BANDS: tuple[tuple[str, float, float], ...] = (
    ("BAYES_00", 0.00, 0.01),
    ("BAYES_05", 0.01, 0.05),
    ("BAYES_20", 0.05, 0.20),
    ("BAYES_40", 0.20, 0.40),
    ("BAYES_50", 0.40, 0.60),
    ("BAYES_60", 0.60, 0.80),
    ("BAYES_80", 0.80, 0.95),
    ("BAYES_95", 0.95, 0.99),
    ("BAYES_99", 0.99, 1.00),
)
BAYES_999 = ("BAYES_999", 0.999, 1.00)
BAND_NAMES: tuple[str, ...] = tuple(name for name, _, _ in BANDS) + (BAYES_999[0],)

# SpamAssassin 4.0 default scores (50_scores.cf, score set 3: Bayes + network tests).
SA_DEFAULT_SCORES: dict[str, float] = {
    "BAYES_00": -1.9,
    "BAYES_05": -0.5,
    "BAYES_20": -0.001,
    "BAYES_40": -0.001,
    "BAYES_50": 0.8,
    "BAYES_60": 1.5,
    "BAYES_80": 2.0,
    "BAYES_95": 3.0,
    "BAYES_99": 3.5,
    "BAYES_999": 0.2,
}


def _check(probability: float) -> float:
    p = float(probability)
    if math.isnan(p) or p < 0.0 or p > 1.0:
        raise ValueError(f"probability must be within [0, 1], got {probability!r}")
    return p


def band_for(probability: float) -> str:
    """The one band for ``probability``: BAYES_999 above 0.999, else SpamAssassin's band."""
    p = _check(probability)
    if p > BAYES_999[1]:
        return BAYES_999[0]
    for name, low, high in BANDS:
        if (low == 0.0 or p > low) and p <= high:
            return name
    return BANDS[-1][0]  # unreachable: the bands cover [0, 1]


def bands_for(probability: float) -> tuple[str, ...]:
    """Every band SpamAssassin fires for ``probability`` (BAYES_99 and BAYES_999 together)."""
    p = _check(probability)
    name = band_for(p)
    if name == BAYES_999[0]:
        return ("BAYES_99", "BAYES_999")
    return (name,)

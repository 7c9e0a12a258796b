"""BAYES_* bands follow SpamAssassin's boundaries."""

from __future__ import annotations

import pytest

from scanner.ml.bands import BAND_NAMES, SA_DEFAULT_SCORES, band_for, bands_for


@pytest.mark.parametrize(("p", "band"), [
    (0.0, "BAYES_00"), (0.01, "BAYES_00"), (0.0100001, "BAYES_05"), (0.05, "BAYES_05"),
    (0.2, "BAYES_20"), (0.3, "BAYES_40"), (0.5, "BAYES_50"), (0.6, "BAYES_50"),
    (0.61, "BAYES_60"), (0.9, "BAYES_80"), (0.95, "BAYES_80"), (0.96, "BAYES_95"),
    (0.99, "BAYES_95"), (0.995, "BAYES_99"), (0.999, "BAYES_99"), (0.9991, "BAYES_999"),
    (1.0, "BAYES_999"),
])
def test_band_boundaries(p: float, band: str) -> None:
    assert band_for(p) == band


def test_bands_for_fires_99_with_999() -> None:
    assert bands_for(0.9999) == ("BAYES_99", "BAYES_999")
    assert bands_for(0.5) == ("BAYES_50",)


def test_bad_probabilities() -> None:
    for p in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError):
            band_for(p)


def test_every_band_has_a_default_score() -> None:
    assert set(BAND_NAMES) == set(SA_DEFAULT_SCORES)

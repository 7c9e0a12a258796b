"""Evaluation: ROC AUC, (1-ROCA)%, spam recall at fixed false-positive rates, confusion.

Metrics are computed in numpy (rank statistics with ties averaged). Cross-validation
uses :func:`scanner.ml.train.stratified_folds` (deterministic, digest-ordered), trains
a full model (weights and calibration) on K-1 folds and pools the calibrated
probabilities of every held-out fold.

Two confusion matrices: at the probability :data:`DEFAULT_THRESHOLD` = 0.9 (``--threshold``,
where the model is confident: BAYES_80 and above in SpamAssassin's bands), and at the
configured ``policy.tag2_level`` counting only the weights of the BAYES_* symbols each
probability gives (with the shipped table, BAYES_999 alone reaches 6.31; everything
below needs points from other checks, which ``bench/classifier/tag2.py`` adds).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from scanner.ml.bands import BAND_NAMES, band_for, bands_for
from scanner.ml.corpus import Corpus
from scanner.ml.features import FeatureSettings
from scanner.ml.model import Model
from scanner.ml.parallel import fork_map
from scanner.ml.train import TrainOptions, check_trainable, fit_model, stratified_folds
from scanner.scores import ScoreTable

DEFAULT_THRESHOLD = 0.9
FPR_POINTS = (0.001, 0.01)


@dataclass(frozen=True, slots=True)
class Tag2:
    """Messages whose BAYES_* weights alone reach ``level`` (policy.tag2_level)."""

    level: float
    tp: int
    fn: int
    fp: int
    tn: int


@dataclass(frozen=True, slots=True)
class Report:
    """Figures of one evaluation."""

    ham: int
    spam: int
    auc: float
    recall_at_fpr: dict[float, float]
    threshold: float
    tp: int
    fn: int
    fp: int
    tn: int
    method: str
    bands: dict[str, tuple[int, int]]
    tag2: Tag2 | None = None

    @property
    def one_minus_roca_pct(self) -> float:
        return (1.0 - self.auc) * 100.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly figures."""
        return {
            "method": self.method,
            "ham": self.ham,
            "spam": self.spam,
            "roc_auc": round(self.auc, 8),
            "one_minus_roca_pct": round(self.one_minus_roca_pct, 6),
            "spam_recall_at_fpr": {f"{p:g}": round(r, 6)
                                   for p, r in self.recall_at_fpr.items()},
            "threshold": self.threshold,
            "confusion": {"tp": self.tp, "fn": self.fn, "fp": self.fp, "tn": self.tn},
            "bands": {name: {"ham": h, "spam": s} for name, (h, s) in self.bands.items()},
            **({"tag2": asdict(self.tag2)} if self.tag2 else {}),
        }

    def text(self) -> str:
        """Human-readable figures."""
        recalls = "  ".join(f"at {p * 100:g}% FPR: {r * 100:.2f}%"
                            for p, r in self.recall_at_fpr.items())
        lines = [
            f"messages: {self.ham} ham, {self.spam} spam ({self.method})",
            f"ROC AUC: {self.auc:.6f}   (1-ROCA)%: {self.one_minus_roca_pct:.4f}",
            f"spam recall  {recalls}",
            f"threshold {self.threshold:g}: " + self._confusion(self.tp, self.fn, self.fp,
                                                                self.tn),
        ]
        if self.tag2 is not None:
            t = self.tag2
            lines.append(f"tag2_level {t.level:g}, BAYES_* weights alone: "
                         + self._confusion(t.tp, t.fn, t.fp, t.tn))
        lines.append("bands (ham/spam): " + "  ".join(f"{name[6:]} {h}/{s}"
                                                     for name, (h, s) in self.bands.items()))
        return "\n".join(lines)

    def _confusion(self, tp: int, fn: int, fp: int, tn: int) -> str:
        spam_recall = tp / self.spam * 100 if self.spam else math.nan
        fpr = fp / self.ham * 100 if self.ham else math.nan
        return (f"TP {tp}  FN {fn}  FP {fp}  TN {tn}   (spam recall {spam_recall:.2f}%, "
                f"false positives {fpr:.3f}%)")


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int((labels == 1).sum())
    n_neg = int(labels.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    i = 0
    while i < scores.size:
        j = i
        while j + 1 < scores.size and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    rank_sum = float(ranks[labels == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def recall_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """Spam recall when at most ``floor(fpr * ham)`` ham may score above the threshold."""
    ham = np.sort(np.asarray(scores)[np.asarray(labels) == 0])[::-1]
    spam = np.asarray(scores)[np.asarray(labels) == 1]
    if spam.size == 0:
        return math.nan
    allowed = int(math.floor(fpr * ham.size + 1e-9))
    if allowed >= ham.size:
        return 1.0
    return float((spam > ham[allowed]).mean())


def report(labels: np.ndarray, probabilities: np.ndarray, threshold: float, method: str,
           tag2: tuple[float, Callable[[float], float]] | None = None) -> Report:
    """All figures for pooled probabilities; ``tag2`` is (tag2_level, the BAYES_* weight
    a probability gets) for the confusion matrix at the tag2 level."""
    labels = np.asarray(labels)
    p = np.asarray(probabilities)
    predicted = p >= threshold
    return Report(
        ham=int((labels == 0).sum()),
        spam=int((labels == 1).sum()),
        auc=roc_auc(labels, p),
        recall_at_fpr={f: recall_at_fpr(labels, p, f) for f in FPR_POINTS},
        threshold=threshold,
        tp=int((predicted & (labels == 1)).sum()),
        fn=int((~predicted & (labels == 1)).sum()),
        fp=int((predicted & (labels == 0)).sum()),
        tn=int((~predicted & (labels == 0)).sum()),
        method=method,
        bands=band_counts(labels, p),
        tag2=None if tag2 is None else tag2_confusion(labels, p, *tag2),
    )


def bayes_weight(table: ScoreTable, probability: float) -> float:
    """The summed weights of the BAYES_* symbols the classifier emits for ``probability``."""
    return sum(table.get(symbol).weight for symbol in bands_for(probability))


def tag2_confusion(labels: np.ndarray, probabilities: np.ndarray, level: float,
                   weight: Callable[[float], float]) -> Tag2:
    """Spam and ham whose BAYES_* weight ``weight(p)`` reaches ``level``."""
    flagged = np.array([weight(float(p)) >= level for p in probabilities], dtype=bool)
    spam = labels == 1
    return Tag2(level, int((flagged & spam).sum()), int((~flagged & spam).sum()),
                int((flagged & ~spam).sum()), int((~flagged & ~spam).sum()))


def band_counts(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, tuple[int, int]]:
    """(ham, spam) per BAYES_* band (the single band of :func:`band_for`)."""
    counts = {name: [0, 0] for name in BAND_NAMES}
    for label, p in zip(labels.tolist(), probabilities.tolist(), strict=True):
        counts[band_for(p)][1 if label else 0] += 1
    return {name: (h, s) for name, (h, s) in counts.items()}


def score_rows(model: Model, corpus: Corpus) -> np.ndarray:
    """Calibrated probabilities of already extracted rows."""
    decisions = np.fromiter((model.decision(row) for row in corpus.rows), dtype=np.float64,
                            count=len(corpus.rows))
    return model.calibration.probabilities(decisions)


def cross_validate(
    corpus: Corpus,
    settings: FeatureSettings,
    options: TrainOptions,
    folds: int,
    on_fold: Callable[[int, int], None] | None = None,
    jobs: int = 1,
) -> np.ndarray:
    """Out-of-fold calibrated probabilities from stratified K-fold cross-validation; the
    folds run in up to ``jobs`` processes (same result whatever ``jobs``)."""
    check_trainable(corpus.labels)
    if folds < 2 or folds > min(corpus.ham, corpus.spam):
        raise ValueError(f"--folds must be between 2 and the size of the smaller class "
                         f"({min(corpus.ham, corpus.spam)})")
    assignment = stratified_folds(corpus.labels, folds)
    probabilities = np.zeros(corpus.labels.size)
    state = (corpus, settings, options, assignment)
    for done, (fold, values) in enumerate(fork_map(_fold, state, range(folds), jobs), 1):
        probabilities[assignment == fold] = values
        if on_fold is not None:
            on_fold(done, folds)
    return probabilities


def _fold(state: tuple[Corpus, FeatureSettings, TrainOptions, np.ndarray], fold: int
          ) -> np.ndarray:
    """The held-out probabilities of one fold, from a model fitted on the others."""
    corpus, settings, options, assignment = state
    model = fit_model(corpus.subset(assignment != fold), settings, options)
    return score_rows(model, corpus.subset(assignment == fold))

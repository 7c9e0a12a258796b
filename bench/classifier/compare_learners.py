#!/usr/bin/env python3
"""Compare candidate learners on scanner's features, on the same K folds as run.py.

This is the measurement behind the choice of learner in scanner/ml/train.py (a LinearSVC,
blended with an NB-SVM and a logistic-loss SGD model; the blend rows time all members). Every
candidate sees the same feature rows (models/default.features.toml) and the same
digest-ordered stratified folds; pooled out-of-fold decision values are compared. The
last row is the reference "plain hashed character 4-gram logistic regression" on the
raw message bytes (headers included, so with every corpus artefact available to it).

    .venv/bin/python bench/classifier/compare_learners.py [--corpus X.tar.xz] [--folds 10]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scanner.ml.config_file import load_settings_file  # noqa: E402
from scanner.ml.corpus import read_corpus  # noqa: E402
from scanner.ml.evaluate import recall_at_fpr, roc_auc  # noqa: E402
from scanner.ml.mailbox_reader import iter_messages  # noqa: E402
from scanner.ml.model import message_digest  # noqa: E402
from scanner.ml.train import stratified_folds  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"


def candidates() -> dict[str, Callable[[], Any]]:
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.naive_bayes import ComplementNB, MultinomialNB
    from sklearn.svm import LinearSVC

    return {
        "LinearSVC C=1, ham weight 8 (chosen)": lambda: LinearSVC(
            C=1.0, class_weight={0: 8.0, 1: 1.0}, random_state=0, max_iter=5000),
        "LinearSVC C=1": lambda: LinearSVC(C=1.0, random_state=0, max_iter=5000),
        "LinearSVC C=4": lambda: LinearSVC(C=4.0, random_state=0, max_iter=5000),
        "LogisticRegression C=10": lambda: LogisticRegression(C=10, solver="liblinear"),
        "LogisticRegression C=100": lambda: LogisticRegression(C=100, solver="liblinear"),
        "SGD log-loss (online), 20 epochs": lambda: SGDClassifier(
            loss="log_loss", alpha=1e-6, max_iter=20, tol=None, random_state=0),
        "SGD hinge averaged, 20 epochs": lambda: SGDClassifier(
            loss="hinge", alpha=1e-5, max_iter=20, tol=None, average=True, random_state=0),
        "MultinomialNB alpha=0.01": lambda: MultinomialNB(alpha=0.01),
        "ComplementNB alpha=0.1": lambda: ComplementNB(alpha=0.1),
    }


class NBSVM:
    """LinearSVC on features scaled by their naive-Bayes log-count ratio (Wang & Manning)."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def fit(self, X: Any, y: np.ndarray) -> NBSVM:
        from sklearn.svm import LinearSVC

        spam = self.alpha + np.asarray(X[y == 1].sum(axis=0)).ravel()
        ham = self.alpha + np.asarray(X[y == 0].sum(axis=0)).ravel()
        self.ratio = np.log((spam / spam.sum()) / (ham / ham.sum()))
        self.svm = LinearSVC(C=1.0, class_weight={0: 8.0, 1: 1.0}, random_state=0,
                             max_iter=5000).fit(X.multiply(self.ratio).tocsr(), y)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        return self.svm.decision_function(X.multiply(self.ratio).tocsr())


def blends(X: Any, y: np.ndarray, folds: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Pooled decisions of the blend members and of z-scored mixes of them."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.svm import LinearSVC

    svm = pooled(X, y, folds, lambda: LinearSVC(C=1.0, class_weight={0: 8.0, 1: 1.0},
                                                random_state=0, max_iter=5000))
    sgd = pooled(X, y, folds, lambda: SGDClassifier(loss="log_loss", alpha=1e-6, max_iter=20,
                                                    tol=None, random_state=0))
    rows = []
    for alpha in (0.1, 0.03):
        nb = pooled(X, y, folds, lambda a=alpha: NBSVM(a))
        rows.append((f"NB-SVM alpha={alpha}", nb))
        for w_svm, w_nb, w_sgd in ((0.5, 0.5, 0.0), (0.4, 0.3, 0.3), (0.34, 0.33, 0.33)):
            mix = w_svm * _z(svm) + w_nb * _z(nb) + w_sgd * _z(sgd)
            rows.append((f"blend SVM {w_svm} + NB-SVM(alpha={alpha}) {w_nb} + SGD {w_sgd}",
                         mix))
    return rows


def _z(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean()) / scores.std()


def pooled(X: Any, y: np.ndarray, folds: np.ndarray, make: Callable[[], Any]) -> np.ndarray:
    scores = np.zeros(y.size)
    for fold in np.unique(folds):
        learner = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learner.fit(X[folds != fold], y[folds != fold])
        test = X[folds == fold]
        if hasattr(learner, "decision_function"):
            scores[folds == fold] = learner.decision_function(test)
        else:
            log_p = learner.predict_log_proba(test)
            scores[folds == fold] = log_p[:, 1] - log_p[:, 0]
    return scores


def row(name: str, y: np.ndarray, scores: np.ndarray, seconds: float) -> str:
    return (f"| {name} | {(1 - roc_auc(y, scores)) * 100:.4f} | "
            f"{recall_at_fpr(y, scores, 0.001) * 100:.2f}% | "
            f"{recall_at_fpr(y, scores, 0.01) * 100:.2f}% | {seconds:.0f} s |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--folds", type=int, default=10)
    args = parser.parse_args()
    ham = f"{args.corpus}#spamassassin-public/ham"
    spam = f"{args.corpus}#spamassassin-public/spam"
    settings, _ = load_settings_file(REPO / "models" / "default.features.toml")
    corpus = read_corpus([ham], [spam], settings)
    X = corpus.matrix(settings.dimension)
    y = corpus.labels.astype(int)
    folds = stratified_folds(corpus.labels, args.folds)
    print(f"| learner ({args.folds}-fold, same folds) | (1-ROCA)% | recall @0.1% FPR | "
          "recall @1% FPR | CV time |")
    print("|---|---:|---:|---:|---:|")
    for name, make in candidates().items():
        started = time.perf_counter()
        scores = pooled(X, y, folds, make)
        print(row(name, y, scores, time.perf_counter() - started), flush=True)
    started = time.perf_counter()
    for name, scores in blends(X, y, folds):
        print(row(name, y, scores, time.perf_counter() - started), flush=True)
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression

    by_digest = {}
    for path in (ham, spam):
        for _, raw in iter_messages(path):
            by_digest[message_digest(raw)] = raw.decode("latin-1")
    docs = [by_digest[d] for d in corpus.digests]
    vectorizer = HashingVectorizer(analyzer="char", ngram_range=(4, 4), n_features=1 << 20,
                                   alternate_sign=False, binary=True)
    started = time.perf_counter()
    scores = pooled(vectorizer.transform(docs), y, folds,
                    lambda: LogisticRegression(C=10, solver="liblinear"))
    print(row("reference: raw-message char 4-gram LR (leaky)", y, scores,
              time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())

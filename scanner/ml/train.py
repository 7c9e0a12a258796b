"""Training: fit the linear model on a :class:`Corpus`, calibrate it, build a Model.

The learner is scikit-learn's ``LinearSVC`` (L2-regularised squared hinge loss, liblinear,
fixed ``random_state``; ``ham_weight`` makes a misclassified ham cost more than a spam);
its decision values are mapped to probabilities by Platt scaling
fitted on out-of-fold decisions of an inner stratified K-fold. Only this module (and
:mod:`scanner.ml.evaluate` through it) imports scikit-learn; the saved model needs none.
See ``models/README.md`` for the comparison that chose this learner.

Everything is deterministic: rows come sorted by digest, folds are assigned by rank
within each class, and no timestamp enters the model unless ``SOURCE_DATE_EPOCH`` is set.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from scanner.ml.calibration import Calibration, fit_platt
from scanner.ml.corpus import Corpus
from scanner.ml.errors import TrainingError
from scanner.ml.features import FeatureSettings
from scanner.ml.model import DEFAULT_AGGRESSIVENESS, Model
from scanner.ml.parallel import fork_map

LEARNER = "LinearSVC"  # plus NB-SVM and SGD members when the options blend them


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """Learner settings (stored in the model's training metadata)."""

    C: float = 1.0
    ham_weight: float = 1.0
    nb_weight: float = 0.0
    nb_alpha: float = 0.1
    sgd_weight: float = 0.0
    calibration_folds: int = 3
    seed: int = 0
    max_iter: int = 5000
    value_dtype: str = "float16"
    aggressiveness: float = DEFAULT_AGGRESSIVENESS

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        """Options from a ``[trainer]`` table; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown trainer options: {', '.join(sorted(unknown))}")
        options = cls(**data)
        if options.C <= 0 or options.aggressiveness <= 0 or options.ham_weight <= 0:
            raise ValueError("C, ham_weight and aggressiveness must be positive")
        if options.nb_weight < 0 or options.sgd_weight < 0 \
                or options.nb_weight + options.sgd_weight >= 1 or options.nb_alpha <= 0:
            raise ValueError("nb_weight and sgd_weight must be >= 0 with a sum below 1, "
                             "nb_alpha positive")
        if options.calibration_folds < 2:
            raise ValueError("calibration_folds must be at least 2")
        if options.value_dtype not in ("float16", "float32"):
            raise ValueError("value_dtype must be float16 or float32")
        return options


def stratified_folds(labels: np.ndarray, k: int) -> np.ndarray:
    """Fold number per row: within each class, rows (already in digest order) dealt round-robin.

    Digest order is effectively random but fully reproducible, so this is a seeded-free
    stratified shuffle split that anyone can recompute from the messages alone.
    """
    folds = np.zeros(labels.size, dtype=np.int64)
    for value in (0, 1):
        members = np.flatnonzero(labels == value)
        folds[members] = np.arange(members.size) % k
    return folds


def check_trainable(labels: np.ndarray) -> None:
    """Raise :class:`TrainingError` unless both classes are present."""
    ham = int((labels == 0).sum())
    spam = int((labels == 1).sum())
    if ham == 0 or spam == 0:
        raise TrainingError(
            f"training needs both ham and spam; got {ham} ham and {spam} spam "
            "(use --update to add one class to an existing model)"
        )


def fit_linear(corpus: Corpus, settings: FeatureSettings, options: TrainOptions
               ) -> tuple[np.ndarray, float]:
    """Fit the linear model; returns (weights rounded to the stored precision, bias).

    The model is one linear SVM, or with ``nb_weight``/``sgd_weight`` a blend of up to
    three linear learners on the same features: the SVM, an NB-SVM (the SVM trained on
    features scaled by their naive-Bayes log-count ratio, Wang and Manning 2012) and a
    logistic-loss SGD model. Each member's decision values are scaled to unit standard
    deviation on the training rows before they are mixed; the blend of linear models is
    itself one weight vector, so scoring and online learning do not change.
    """
    check_trainable(corpus.labels)
    X = corpus.matrix(settings.dimension)
    y = corpus.labels
    members: list[tuple[float, np.ndarray, float]] = []
    svm_weight = 1.0 - options.nb_weight - options.sgd_weight
    members.append((svm_weight, *_fit_svm(X, y, options)))
    if options.nb_weight > 0:
        ratio = _log_count_ratio(X, y, options.nb_alpha)
        scaled = X.copy()  # X times the ratio of each column, without a COO detour
        scaled.data *= ratio[scaled.indices]
        weights, bias = _fit_svm(scaled, y, options)
        del scaled
        members.append((options.nb_weight, weights * ratio, bias))
    if options.sgd_weight > 0:
        members.append((options.sgd_weight, *_fit_sgd(X, y, options)))
    if len(members) == 1:
        weights, bias = members[0][1], members[0][2]
    else:
        weights = np.zeros(settings.dimension)
        bias = 0.0
        for share, w, b in members:
            spread = float(np.std(X @ w + b)) or 1.0
            weights += (share / spread) * w
            bias += share * b / spread
    stored = np.asarray(weights).astype(options.value_dtype).astype(np.float32)
    # The blend's spreads come from numpy reductions whose last bits depend on the CPU;
    # storing the bias in single precision (as the weights) keeps the file's bytes the
    # same across machines.
    return stored, float(np.float32(bias))


def _fit_svm(X: Any, y: np.ndarray, options: TrainOptions) -> tuple[np.ndarray, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    learner = LinearSVC(C=options.C, loss="squared_hinge", dual=True,
                        class_weight={0: options.ham_weight, 1: 1.0},
                        random_state=options.seed, max_iter=options.max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        learner.fit(X, y)
    return learner.coef_.ravel().astype(np.float64), float(learner.intercept_[0])


def _fit_sgd(X: Any, y: np.ndarray, options: TrainOptions) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import SGDClassifier

    learner = SGDClassifier(loss="log_loss", alpha=1e-6, max_iter=20, tol=None,
                            random_state=options.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learner.fit(X, y)
    return learner.coef_.ravel().astype(np.float64), float(learner.intercept_[0])


def _log_count_ratio(X: Any, y: np.ndarray, alpha: float) -> np.ndarray:
    """log( P(feature | spam) / P(feature | ham) ) with additive smoothing ``alpha``."""
    spam = alpha + np.asarray(X[y == 1].sum(axis=0)).ravel()
    ham = alpha + np.asarray(X[y == 0].sum(axis=0)).ravel()
    return np.log((spam / spam.sum()) / (ham / ham.sum()))


def fit_model(corpus: Corpus, settings: FeatureSettings, options: TrainOptions,
              jobs: int = 1) -> Model:
    """Fit weights and calibration and wrap them in a :class:`Model`.

    The fit on all the mail and the fits of the calibration folds are independent and
    run in up to ``jobs`` processes (:func:`scanner.ml.parallel.fork_map`); the result
    does not depend on ``jobs``."""
    check_trainable(corpus.labels)
    k = options.calibration_folds
    calibrated = min(corpus.ham, corpus.spam) >= k  # else too few for an inner split
    parts: list[int] = [-1, *range(k)] if calibrated else [-1]
    folds = stratified_folds(corpus.labels, k)
    results = dict(fork_map(_fit_part, (corpus, settings, options, folds), parts, jobs))
    weights, bias = results[0]
    if calibrated:
        decisions = np.zeros(corpus.labels.size)
        for index in range(1, len(parts)):
            held, values = results[index]
            decisions[held] = values
        calibration = fit_platt(decisions, corpus.labels)
    else:
        calibration = Calibration(a=-2.0, b=0.0)  # a neutral sigmoid
    return Model(settings, weights, bias, calibration, training=training_metadata(
        corpus, options), value_dtype=options.value_dtype)


def _fit_part(state: tuple[Corpus, FeatureSettings, TrainOptions, np.ndarray], part: int
              ) -> Any:
    """Part -1: the weights on all the mail; part f: the out-of-fold decisions of
    calibration fold f (held-out row numbers and their decision values)."""
    corpus, settings, options, folds = state
    if part < 0:
        return fit_linear(corpus, settings, options)
    weights, bias = fit_linear(corpus.subset(folds != part), settings, options)
    held = np.flatnonzero(folds == part)
    values = np.array([float(np.dot(weights[corpus.rows[i][0]], corpus.rows[i][1])) + bias
                       for i in held])
    return held, values


def corpus_digest(corpus: Corpus) -> str:
    """SHA-256 over the sorted (digest, label) pairs: identifies the training set."""
    h = hashlib.sha256()
    for digest, label in zip(corpus.digests, corpus.labels.tolist(), strict=True):
        h.update(digest)
        h.update(b"\x01" if label else b"\x00")
    return h.hexdigest()


def learner_name(options: TrainOptions) -> str:
    """The learner, or the members of the blend, as stored in the model."""
    names = [LEARNER]
    if options.nb_weight > 0:
        names.append(f"NB-SVM ({options.nb_weight:g})")
    if options.sgd_weight > 0:
        names.append(f"SGD log-loss ({options.sgd_weight:g})")
    return " + ".join(names)


def training_metadata(corpus: Corpus, options: TrainOptions) -> dict[str, Any]:
    """What goes into the model's ``training`` section (no wall-clock time)."""
    import sklearn

    meta: dict[str, Any] = {
        "learner": learner_name(options),
        "options": asdict(options),
        "aggressiveness": options.aggressiveness,
        "ham": corpus.ham,
        "spam": corpus.spam,
        "duplicates_skipped": corpus.duplicates,
        "conflicts_dropped": corpus.conflicts,
        "corpus_sha256": corpus_digest(corpus),
        "sklearn_version": sklearn.__version__,
        "online": {"ham": 0, "spam": 0},
    }
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        meta["created_epoch"] = int(epoch)
    return meta


def update_model(model: Model, corpus: Corpus) -> dict[str, int]:
    """Online (PA-I) updates of an existing model with new mail, in digest order."""
    counts = {"learned": 0, "unchanged": 0, "duplicate": 0}
    for digest, label, row in zip(corpus.digests, corpus.labels.tolist(), corpus.rows,
                                  strict=True):
        counts[model.learn_features(digest, row, bool(label))] += 1
    return counts

#!/usr/bin/env python3
"""What one `scanner learn` does to the other mail: the step size of online learning.

A user's "move to Junk" (or back) teaches the model one message at a time. A step that
pushes the message far past the boundary also moves every message sharing its features
(the same mailer, the same shape of short plain-text mail), which is how one learnt
message can turn a whole kind of ham into spam. This measures it per aggressiveness
(the PA-I cap on the step, ``[trainer] aggressiveness``).

The corpus is split by the digest folds: a model is trained on 80 % (folds 0-7) and the
other 20 % (T) are scored. Then, for each of ``--samples`` messages of T, a copy of the
model learns that one message and the rest of T is scored again:

* ``right``: the message learnt with its true label (a correction);
* ``wrong``: a ham learnt as spam (a user's Junk move of mail that is not spam, e.g. a
  newsletter), the case that hurts: how much other ham does it drag up?

Reported per aggressiveness: the learnt message's probability before and after
(median), the median number of other messages of T whose probability moved by more
than 0.1, and how many other ham / spam crossed the 0.5 and 0.9 lines the wrong way
(summed over the samples). Then the case learning is for: later spam (``spam_2``) that
a model trained on the 2002 folders scores below 0.5, learnt one message at a time:
how far the message itself moves, how many of the other missed spam it brings over 0.5
(the same campaign's other copies), and the ham (``easy_ham_2``) it drags over 0.5 /
0.9. Then the batch case of ``online_update.py`` (40 % trained,
40 % learnt message by message, 20 % held out) for each aggressiveness, so that a
smaller step can be seen to keep what mailbox-fed learning recovers.

    .venv/bin/python bench/classifier/learn_one.py [--samples 100] [--aggressiveness 1,0.25,0.1]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scanner.ml.config_file import load_settings_file  # noqa: E402
from scanner.ml.corpus import Corpus, read_corpus  # noqa: E402
from scanner.ml.evaluate import report, score_rows  # noqa: E402
from scanner.ml.model import Model  # noqa: E402
from scanner.ml.train import fit_model, stratified_folds, update_model  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"


def _matrix(corpus: Corpus, dimension: int):  # -> scipy.sparse.csr_matrix
    return corpus.matrix(dimension)


def _probabilities(model: Model, X) -> np.ndarray:  # noqa: N803
    return model.calibration.probabilities(X @ model.weights.astype(np.float64) + model.bias)


def single_steps(model: Model, held: Corpus, samples: int, aggressiveness: float,
                 seed: int) -> dict[str, dict[str, float]]:
    """Learn each sampled message alone on a copy of the model; collateral on the rest."""
    X = _matrix(held, model.settings.dimension)  # noqa: N806
    base = _probabilities(model, X)
    rng = np.random.default_rng(seed)
    ham = np.flatnonzero(held.labels == 0)
    picks = {"right": rng.choice(held.labels.size, size=samples, replace=False),
             "wrong": rng.choice(ham, size=min(samples, ham.size), replace=False)}
    out: dict[str, dict[str, float]] = {}
    for case, rows in picks.items():
        before, after, moved = [], [], []
        crossed = {"ham>0.5": 0, "ham>0.9": 0, "spam<0.5": 0, "spam<0.9": 0}
        for i in rows:
            spam = bool(held.labels[i]) if case == "right" else True
            trial = copy.copy(model)
            trial.weights = model.weights.copy()
            trial.update(held.rows[i], spam, aggressiveness)
            p = _probabilities(trial, X)
            others = np.ones(p.size, dtype=bool)
            others[i] = False
            before.append(base[i])
            after.append(p[i])
            moved.append(int((np.abs(p - base) > 0.1)[others].sum()))
            h = others & (held.labels == 0)
            s = others & (held.labels == 1)
            crossed["ham>0.5"] += int(((base < 0.5) & (p >= 0.5) & h).sum())
            crossed["ham>0.9"] += int(((base < 0.9) & (p >= 0.9) & h).sum())
            crossed["spam<0.5"] += int(((base >= 0.5) & (p < 0.5) & s).sum())
            crossed["spam<0.9"] += int(((base >= 0.9) & (p < 0.9) & s).sum())
        out[case] = {"p_before": float(np.median(before)), "p_after": float(np.median(after)),
                     "moved_median": float(np.median(moved)), "moved_max": float(max(moved)),
                     **{k: float(v) for k, v in crossed.items()}}
    return out


def _group(name: str) -> str:
    return name.rsplit("/", 1)[-1].split("-", 1)[0]


def missed_steps(model: Model, held: Corpus, samples: int, aggressiveness: float,
                 seed: int) -> dict[str, float]:
    """Learn, one at a time, later spam the model missed (p < 0.5): the message itself,
    the other missed spam it brings over 0.5 (the benefit), the ham it drags up."""
    X = _matrix(held, model.settings.dimension)  # noqa: N806
    base = _probabilities(model, X)
    missed = np.flatnonzero((held.labels == 1) & (base < 0.5))
    rng = np.random.default_rng(seed)
    rows = rng.choice(missed, size=min(samples, missed.size), replace=False)
    before, after, fixed, ham5, ham9 = [], [], [], 0, 0
    ham = held.labels == 0
    for i in rows:
        trial = copy.copy(model)
        trial.weights = model.weights.copy()
        trial.update(held.rows[i], True, aggressiveness)
        p = _probabilities(trial, X)
        before.append(base[i])
        after.append(p[i])
        others = np.zeros(p.size, dtype=bool)
        others[missed] = True
        others[i] = False
        fixed.append(int((others & (p >= 0.5)).sum()))
        ham5 += int((ham & (base < 0.5) & (p >= 0.5)).sum())
        ham9 += int((ham & (base < 0.9) & (p >= 0.9)).sum())
    return {"missed": float(missed.size), "samples": float(rows.size),
            "p_before": float(np.median(before)), "p_after": float(np.median(after)),
            "self_fixed": float(np.mean(np.array(after) >= 0.5)),
            "others_fixed_mean": float(np.mean(fixed)), "ham>0.5": float(ham5),
            "ham>0.9": float(ham9)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--aggressiveness", default="1,0.5,0.25,0.1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-batch", action="store_true", help="skip the batch update case")
    args = parser.parse_args()
    levels = [float(a) for a in args.aggressiveness.split(",")]
    settings, options = load_settings_file(REPO / "models" / "default.features.toml")
    corpus = read_corpus([f"{args.corpus}#spamassassin-public/ham"],
                         [f"{args.corpus}#spamassassin-public/spam"], settings)
    folds = stratified_folds(corpus.labels, 10)
    held = corpus.subset(folds >= 8)
    model = fit_model(corpus.subset(folds < 8), settings, options)
    print(f"one message learnt at a time: {args.samples} samples of the held-out "
          f"{held.labels.size} ({held.ham} ham, {held.spam} spam)")
    print(f"{'aggr.':>6} {'case':>5} {'p before':>8} {'p after':>8} {'moved>0.1':>9} "
          f"{'max':>5} {'ham>0.5':>7} {'ham>0.9':>7} {'spam<0.5':>8} {'spam<0.9':>8}")
    for level in levels:
        for case, r in single_steps(model, held, args.samples, level, args.seed).items():
            print(f"{level:>6g} {case:>5} {r['p_before']:>8.4f} {r['p_after']:>8.4f} "
                  f"{r['moved_median']:>9.0f} {r['moved_max']:>5.0f} {r['ham>0.5']:>7.0f} "
                  f"{r['ham>0.9']:>7.0f} {r['spam<0.5']:>8.0f} {r['spam<0.9']:>8.0f}")
    later = np.array([_group(n) in ("easy_ham_2", "spam_2") for n in corpus.names])
    older = corpus.subset(~later)
    period_model = fit_model(older, settings, options)
    period_held = corpus.subset(later)
    print(f"\nlater spam the model missed, learnt one at a time (trained on the 2002 "
          f"folders, {older.labels.size} messages; scored on easy_ham_2 + spam_2, "
          f"{period_held.ham} ham, {period_held.spam} spam)")
    print(f"{'aggr.':>6} {'missed':>6} {'p before':>8} {'p after':>8} {'self>=0.5':>9} "
          f"{'others fixed':>12} {'ham>0.5':>7} {'ham>0.9':>7}")
    for level in levels:
        r = missed_steps(period_model, period_held, args.samples, level, args.seed)
        print(f"{level:>6g} {r['missed']:>6.0f} {r['p_before']:>8.4f} {r['p_after']:>8.4f} "
              f"{r['self_fixed']:>9.0%} {r['others_fixed_mean']:>12.2f} {r['ham>0.5']:>7.0f} "
              f"{r['ham>0.9']:>7.0f}")
    if args.no_batch:
        return 0
    part_a, part_b = corpus.subset(folds < 4), corpus.subset((folds >= 4) & (folds < 8))
    base = fit_model(part_a, settings, options)
    print("\nbatch: trained on 40 %, then the next 40 % learnt message by message; "
          "held-out 20 %")
    print(report(held.labels, score_rows(base, held), 0.9, "trained on A").text())
    for level in levels:
        updated = copy.deepcopy(base)
        updated.training["aggressiveness"] = level
        counts = update_model(updated, part_b)
        print()
        print(report(held.labels, score_rows(updated, held), 0.9,
                     f"A, then --update with B at aggressiveness {level:g} {counts}").text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""How much does online learning (``scanner train --update`` / ``learn``) recover?

Splits the corpus by the digest folds into A (40%), B (40%) and a held-out T (20%),
then compares on T: a model trained on A; that model after PA-I updates with B (what
``--update`` does); and a model retrained from scratch on A+B.

    .venv/bin/python bench/classifier/online_update.py [--corpus X.tar.xz]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scanner.ml.config_file import load_settings_file  # noqa: E402
from scanner.ml.corpus import read_corpus  # noqa: E402
from scanner.ml.evaluate import report, score_rows  # noqa: E402
from scanner.ml.train import fit_model, stratified_folds, update_model  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    args = parser.parse_args()
    settings, options = load_settings_file(REPO / "models" / "default.features.toml")
    corpus = read_corpus([f"{args.corpus}#spamassassin-public/ham"],
                         [f"{args.corpus}#spamassassin-public/spam"], settings)
    folds = stratified_folds(corpus.labels, 10)
    part_a, part_b = corpus.subset(folds < 4), corpus.subset((folds >= 4) & (folds < 8))
    held_out = corpus.subset(folds >= 8)
    base = fit_model(part_a, settings, options)
    updated = copy.deepcopy(base)
    counts = update_model(updated, part_b)
    retrained = fit_model(corpus.subset(folds < 8), settings, options)
    for name, model in (("trained on A", base), (f"A, then --update with B {counts}", updated),
                        ("retrained on A+B", retrained)):
        print(report(held_out.labels, score_rows(model, held_out), 0.9, name).text())
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

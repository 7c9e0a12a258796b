#!/usr/bin/env python3
"""Train on the corpus's older mail, test on its later mail: how the classifiers hold up.

Cross-validation mixes every period and source into every fold, so it flatters a
model on mail it has never seen. This benchmark splits the SpamAssassin public
corpus by its original folders instead: by default it trains on ``easy_ham``,
``hard_ham`` (2002) and ``spam`` (2002) and tests on ``easy_ham_2`` (2002-2003) and
``spam_2`` (2002-2005), the nearest thing the corpus has to "next year's mail". scanner
(the shipped feature settings, or ``--features``), bogofilter and SpamAssassin's Bayes
learn the same messages and score the same messages.

    .venv/bin/python bench/classifier/cross_period.py [--only scanner bogofilter sa]
        [--features TOML] [--train-ham easy_ham hard_ham] [--train-spam spam]
        [--test-ham easy_ham_2] [--test-spam spam_2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

from competitors import Bogofilter, SpamAssassinBayes, timed  # noqa: E402
from run import (  # noqa: E402
    SETTINGS,
    accuracy,
    accuracy_cells,
    add_common_options,
    corpus_missing,
)

from scanner.ml.config_file import load_settings_file  # noqa: E402
from scanner.ml.corpus import read_corpus  # noqa: E402
from scanner.ml.train import fit_model  # noqa: E402

GROUPS = ("easy_ham", "easy_ham_2", "hard_ham", "spam", "spam_2")


def extract_groups(corpus: Path, workdir: Path) -> dict[str, Path]:
    """One directory per original corpus folder (the file names start with it)."""
    dirs = {name: workdir / name for name in GROUPS}
    for path in dirs.values():
        path.mkdir(parents=True)
    with tarfile.open(corpus) as tar:
        for member in tar:
            if not member.isfile():
                continue
            group = Path(member.name).name.split("-", 1)[0]
            if group in dirs:
                handle = tar.extractfile(member)
                assert handle is not None
                (dirs[group] / Path(member.name).name).write_bytes(handle.read())
    return dirs


def _files(dirs: Sequence[Path]) -> list[str]:
    return sorted(str(p) for d in dirs for p in d.iterdir())


def scanner_figures(features: Path, train: tuple[list[Path], list[Path]],
                    test: tuple[list[Path], list[Path]], jobs: int) -> dict[str, float]:
    settings, options = load_settings_file(features)
    started = time.perf_counter()
    corpus = read_corpus([str(d) for d in train[0]], [str(d) for d in train[1]], settings,
                         jobs=jobs)
    model = fit_model(corpus, settings, options)
    seconds = time.perf_counter() - started
    held = read_corpus([str(d) for d in test[0]], [str(d) for d in test[1]], settings,
                       jobs=jobs)
    scores = np.array([model.score(row) for row in held.rows])
    figures = _figures(held.labels.astype(int), scores, seconds)
    figures["train_messages"] = int(corpus.labels.size)
    figures["test_messages"] = int(held.labels.size)
    return figures


def competitor_figures(tool: Bogofilter | SpamAssassinBayes, workdir: Path,
                       train: tuple[list[Path], list[Path]],
                       test: tuple[list[Path], list[Path]], jobs: int) -> dict[str, float]:
    db = workdir / tool.name.replace(" ", "_")
    _, seconds = timed(tool.train, db, _files(train[0]), _files(train[1]))
    ham, spam = _files(test[0]), _files(test[1])
    result = tool.score(db, ham + spam, jobs)
    scores = np.array([result.get(name, 0.5) for name in ham + spam])
    labels = np.array([0] * len(ham) + [1] * len(spam))
    return _figures(labels, scores, seconds)


def _figures(labels: np.ndarray, scores: np.ndarray, train_seconds: float
             ) -> dict[str, float]:
    """The accuracy figures plus the shares of spam and ham at probability 0.9 or above."""
    figures = accuracy(labels, scores)
    figures["train_seconds"] = train_seconds
    figures["spam_at_0.9"] = float(np.mean(scores[labels == 1] >= 0.9) * 100)
    figures["ham_at_0.9"] = float(np.mean(scores[labels == 0] >= 0.9) * 100)
    return figures


def table(results: dict[str, dict[str, float]]) -> str:
    rows = ["| system (trained on the older folders) | (1-ROCA)% | recall @0.1% FPR | "
            "recall @1% FPR | spam >= 0.9 | ham >= 0.9 | training |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for name, f in results.items():
        rows.append(f"| {name} | {accuracy_cells(f)} | {f['spam_at_0.9']:.1f}% | "
                    f"{f['ham_at_0.9']:.2f}% | {f['train_seconds']:.1f} s |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_options(parser)
    parser.add_argument("--features", type=Path, default=SETTINGS,
                        help="scanner's feature and trainer settings (default: the shipped)")
    parser.add_argument("--train-ham", nargs="+", default=["easy_ham", "hard_ham"],
                        choices=GROUPS)
    parser.add_argument("--train-spam", nargs="+", default=["spam"], choices=GROUPS)
    parser.add_argument("--test-ham", nargs="+", default=["easy_ham_2"], choices=GROUPS)
    parser.add_argument("--test-spam", nargs="+", default=["spam_2"], choices=GROUPS)
    args = parser.parse_args(argv)
    if corpus_missing(args):
        return 1
    overlap = set(args.train_ham + args.train_spam) & set(args.test_ham + args.test_spam)
    if overlap:
        parser.error(f"folders both trained on and tested: {', '.join(sorted(overlap))}")
    with tempfile.TemporaryDirectory(prefix="bench-cross-period-") as tmp:
        workdir = Path(tmp)
        dirs = extract_groups(Path(args.corpus), workdir / "corpus")
        train = ([dirs[g] for g in args.train_ham], [dirs[g] for g in args.train_spam])
        test = ([dirs[g] for g in args.test_ham], [dirs[g] for g in args.test_spam])
        results: dict[str, dict[str, float]] = {}
        if "scanner" in args.only:
            print("scanner ...", file=sys.stderr)
            results["scanner"] = scanner_figures(args.features, train, test, args.jobs)
        if "bogofilter" in args.only:
            print("bogofilter ...", file=sys.stderr)
            results["bogofilter"] = competitor_figures(Bogofilter(workdir), workdir, train,
                                                       test, args.jobs)
        if "sa" in args.only:
            print("SpamAssassin Bayes ...", file=sys.stderr)
            results["SpamAssassin Bayes"] = competitor_figures(SpamAssassinBayes(workdir),
                                                               workdir, train, test, args.jobs)
    print(f"train: ham {' '.join(args.train_ham)}, spam {' '.join(args.train_spam)}; "
          f"test: ham {' '.join(args.test_ham)}, spam {' '.join(args.test_spam)}")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark scanner's spam classifier against bogofilter and SpamAssassin's Bayes.

All three are cross-validated on the same K stratified folds of the SpamAssassin public
corpus (folds from :func:`scanner.ml.train.stratified_folds`, i.e. by message digest),
and timed: training on the whole corpus, batch scoring throughput with ``--jobs``
processes, and (scanner, bogofilter) single-message latency. See README.md.

    .venv/bin/python bench/classifier/run.py [--folds 10] [--jobs 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
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

from scanner.ml.config_file import load_settings_file  # noqa: E402
from scanner.ml.corpus import read_corpus  # noqa: E402
from scanner.ml.evaluate import cross_validate, recall_at_fpr, roc_auc  # noqa: E402
from scanner.ml.model import Model, load_model  # noqa: E402
from scanner.ml.train import stratified_folds  # noqa: E402
from scanner.testing.tar_extract import extract_data  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"
SETTINGS = REPO / "models" / "default.features.toml"
_model: Model | None = None


def accuracy(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {
        "one_minus_roca_pct": (1 - roc_auc(labels, scores)) * 100,
        "recall_at_0.1pct_fpr": recall_at_fpr(labels, scores, 0.001) * 100,
        "recall_at_1pct_fpr": recall_at_fpr(labels, scores, 0.01) * 100,
    }


def _load(path: str) -> None:
    global _model
    _model = load_model(path)


def _score_file(name: str) -> float:
    assert _model is not None
    return _model.score_message(Path(name).read_bytes())


def scanner_figures(names: Sequence[str], labels: np.ndarray, folds: int, jobs: int,
                    ham_dir: Path, spam_dir: Path, workdir: Path) -> dict[str, float]:
    settings, options = load_settings_file(SETTINGS)
    corpus = read_corpus([str(ham_dir)], [str(spam_dir)], settings, jobs=jobs)
    assert corpus.names == list(names)
    started = time.perf_counter()
    probabilities = cross_validate(corpus, settings, options, folds)
    figures = accuracy(labels, probabilities)
    figures["cv_seconds"] = time.perf_counter() - started
    model_path = workdir / "scanner.model"
    _, figures["train_seconds"] = timed(subprocess.run, [
        sys.executable, "-m", "scanner.cli.ml_commands", "train", "--quiet", "--features",
        str(SETTINGS), "--jobs", str(jobs), "--ham", str(ham_dir), "--spam", str(spam_dir),
        "--model", str(model_path)], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    with multiprocessing.get_context("fork").Pool(jobs, _load, (str(model_path),)) as pool:
        pool.map(_score_file, names[:50])  # warm up
        _, seconds = timed(pool.map, _score_file, names, 32)
    figures["batch_msgs_per_second"] = len(names) / seconds
    model = load_model(model_path)
    latencies = []
    for name in names:
        raw = Path(name).read_bytes()
        started = time.perf_counter()
        model.score_message(raw)
        latencies.append((time.perf_counter() - started) * 1000)
    figures["single_median_ms"] = statistics.median(latencies)
    figures["single_p95_ms"] = float(np.percentile(latencies, 95))
    figures["model_bytes"] = model_path.stat().st_size
    return figures


def competitor_figures(tool: Bogofilter | SpamAssassinBayes, names: Sequence[str],
                       labels: np.ndarray, assignment: np.ndarray, folds: int, jobs: int,
                       workdir: Path) -> dict[str, float]:
    scores = np.zeros(len(names))
    train_total = score_total = 0.0
    for fold in range(folds):
        db = workdir / f"{tool.name.replace(' ', '_')}-fold{fold}"
        rows = list(zip(names, labels, assignment, strict=True))
        ham = [n for n, y, f in rows if f != fold and y == 0]
        spam = [n for n, y, f in rows if f != fold and y == 1]
        _, seconds = timed(tool.train, db, ham, spam)
        train_total += seconds
        test = [n for n, f in zip(names, assignment, strict=True) if f == fold]
        result, seconds = timed(tool.score, db, test, jobs)
        score_total += seconds
        for i in np.flatnonzero(assignment == fold):
            scores[i] = result.get(names[i], 0.5)
        print(f"  {tool.name}: fold {fold + 1}/{folds}", file=sys.stderr)
    figures = accuracy(labels, scores)
    figures["cv_train_seconds"] = train_total
    full = workdir / f"{tool.name.replace(' ', '_')}-full"
    ham = [n for n, y in zip(names, labels, strict=True) if y == 0]
    spam = [n for n, y in zip(names, labels, strict=True) if y == 1]
    _, figures["train_seconds"] = timed(tool.train, full, ham, spam)
    _, seconds = timed(tool.score, full, list(names), jobs)
    figures["batch_msgs_per_second"] = len(names) / seconds
    if isinstance(tool, Bogofilter):
        latencies = []
        for name in names[:300]:
            with open(name, "rb") as handle:
                started = time.perf_counter()
                subprocess.run(["bogofilter", "-d", str(full), "-T"], stdin=handle,
                               capture_output=True, check=False)
                latencies.append((time.perf_counter() - started) * 1000)
        figures["single_median_ms"] = statistics.median(latencies)
    return figures


def accuracy_cells(f: dict[str, float]) -> str:
    """The three accuracy columns of a results table row."""
    return (f"{f['one_minus_roca_pct']:.4f} | {f['recall_at_0.1pct_fpr']:.2f}% | "
            f"{f['recall_at_1pct_fpr']:.2f}%")


def table(results: dict[str, dict[str, float]], folds: int) -> str:
    rows = [
        f"| system ({folds}-fold CV, same folds) | (1-ROCA)% | recall @0.1% FPR | "
        "recall @1% FPR | train 6,046 msgs | batch msgs/s | single msg median |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in results.items():
        single = f"{f['single_median_ms']:.2f} ms" if "single_median_ms" in f else "n/a"
        rows.append(f"| {name} | {accuracy_cells(f)} | {f['train_seconds']:.1f} s | "
                    f"{f['batch_msgs_per_second']:.0f} | {single} |")
    return "\n".join(rows)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """--corpus, --jobs, --only and --json, as both classifier benchmarks take them."""
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="corpus .tar.xz")
    parser.add_argument("--jobs", type=int, default=2,
                        help="processes (feature extraction, batch scoring)")
    parser.add_argument("--only", nargs="+", choices=("scanner", "bogofilter", "sa"),
                        default=["scanner", "bogofilter", "sa"])
    parser.add_argument("--json", help="also write the figures to this JSON file")


def corpus_missing(args: argparse.Namespace) -> bool:
    """Say so on stderr when --corpus does not exist."""
    if Path(args.corpus).exists():
        return False
    print(f"{args.corpus}: corpus not found", file=sys.stderr)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, default=10)
    add_common_options(parser)
    args = parser.parse_args(argv)
    if corpus_missing(args):
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-classifier-") as tmp:
        workdir = Path(tmp)
        with tarfile.open(args.corpus) as tar:
            extract_data(tar, workdir)
        ham_dir = workdir / "spamassassin-public" / "ham"
        spam_dir = workdir / "spamassassin-public" / "spam"
        settings, _ = load_settings_file(SETTINGS)
        corpus = read_corpus([str(ham_dir)], [str(spam_dir)], settings, jobs=args.jobs)
        names, labels = corpus.names, corpus.labels.astype(int)
        assignment = stratified_folds(corpus.labels, args.folds)
        results: dict[str, dict[str, float]] = {}
        if "scanner" in args.only:
            print("scanner ...", file=sys.stderr)
            results["scanner"] = scanner_figures(names, labels, args.folds, args.jobs,
                                                 ham_dir, spam_dir, workdir)
        if "bogofilter" in args.only:
            print("bogofilter ...", file=sys.stderr)
            results["bogofilter 1.2.5"] = competitor_figures(
                Bogofilter(workdir), names, labels, assignment, args.folds, args.jobs, workdir)
        if "sa" in args.only:
            print("SpamAssassin Bayes ...", file=sys.stderr)
            results["SpamAssassin 4.0 Bayes"] = competitor_figures(
                SpamAssassinBayes(workdir), names, labels, assignment, args.folds, args.jobs,
                workdir)
    print(table(results, args.folds))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

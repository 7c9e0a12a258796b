#!/usr/bin/env python3
"""How much held-out spam the content checks carry to ``tag2_level``, and how much ham.

The classifier's own figures (``run.py``, ``cross_period.py``) rank messages; what a mail
administrator sees is the total score against ``policy.tag2_level``: the classifier's
``BAYES_*`` bands weighted by the score table plus every other content check. This
benchmark scores mail the model never saw, three ways, with the shipped score table
(and any ``--scores`` file of alternatives, in the format of ``checks.score_files``):

* cross-validated: 10-fold out-of-fold probabilities over the whole corpus;
* later mail: trained on ``easy_ham`` + ``hard_ham`` + ``spam``, scored on
  ``easy_ham_2`` + ``spam_2`` (as ``cross_period.py``);
* earlier mail: trained on ``easy_ham_2`` + ``spam_2``, scored on ``easy_ham`` +
  ``hard_ham`` + ``spam`` (a model that never saw commercial newsletters meets them).

The other checks' points come from ``scanner scan --json`` with the classifier,
ClamAV and every DNS-based check off (their answers would be today's, not the
mail's time): the shipped rules, banned-file and bad-header checks.

    .venv/bin/python bench/classifier/tag2.py [--scores TOML ...] [--tag2 6.31] [--json OUT]
        [--dump ROWS.jsonl]

``--dump`` writes every held-out message with its probability and the other checks'
symbols, which is how to see what the spam left below ``tag2_level`` carries.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

from cross_period import extract_groups  # noqa: E402
from run import DEFAULT_CORPUS, SETTINGS, corpus_missing  # noqa: E402

from scanner.config.policy import PolicyConfig  # noqa: E402
from scanner.ml.config_file import load_settings_file  # noqa: E402
from scanner.ml.corpus import Corpus, read_corpus  # noqa: E402
from scanner.ml.evaluate import bayes_weight, cross_validate, score_rows  # noqa: E402
from scanner.ml.train import fit_model  # noqa: E402
from scanner.scores import ScoreTable, load_scores  # noqa: E402

HAM = ("easy_ham", "easy_ham_2", "hard_ham")
SPAM = ("spam", "spam_2")
OLDER = (("easy_ham", "hard_ham"), ("spam",))
LATER = (("easy_ham_2",), ("spam_2",))
OFF = ["bayes", "clamav", "dnsbl", "uribl", "auth", "dkim_sign"]

# (name, label, probability) of every held-out message
Scored = list[tuple[str, int, float]]


def other_points(files: list[str], score_files: Sequence[Path], workdir: Path,
                 symbols: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    """Each file's score from every content check but the classifier (and, into
    ``symbols`` when given, the symbols that make it up)."""
    config = workdir / "scan.toml"
    config.write_text("[checks]\n" f"disabled = {json.dumps(OFF)}\n"
                      f"score_files = {json.dumps([str(p) for p in score_files])}\n")
    points: dict[str, float] = {}
    for start in range(0, len(files), 2000):
        done = subprocess.run(
            [sys.executable, "-m", "scanner", "scan", "--json", "-c", str(config),
             *files[start:start + 2000]],
            capture_output=True, text=True, check=True, cwd=REPO)
        for line in done.stdout.splitlines():
            row = json.loads(line)
            points[row["file"]] = float(sum(row["symbols"].values()))
            if symbols is not None:
                symbols[row["file"]] = row["symbols"]
    return points


def held_out(dirs: dict[str, Path], features: Path, folds: int, jobs: int
             ) -> dict[str, Scored]:
    """Held-out probabilities: cross-validated, later mail, earlier mail."""
    settings, options = load_settings_file(features)

    def read(ham: Sequence[str], spam: Sequence[str]) -> Corpus:
        return read_corpus([str(dirs[g]) for g in ham], [str(dirs[g]) for g in spam],
                           settings, jobs=jobs)

    def scored(corpus: Corpus, probabilities: np.ndarray) -> Scored:
        return [(n, int(lab), float(p))
                for n, lab, p in zip(corpus.names, corpus.labels, probabilities, strict=True)]

    sets: dict[str, Scored] = {}
    everything = read(HAM, SPAM)
    sets[f"cross-validated ({folds} folds)"] = scored(
        everything, cross_validate(everything, settings, options, folds))
    for name, train, test in (("later mail", OLDER, LATER), ("earlier mail", LATER, OLDER)):
        model = fit_model(read(*train), settings, options)
        corpus = read(*test)
        sets[name] = scored(corpus, score_rows(model, corpus))
    return sets


def figures(rows: Scored, points: dict[str, float], table: ScoreTable, level: float
            ) -> dict[str, float]:
    """Spam and ham at or above ``level``: counts and shares."""
    flagged = {0: 0, 1: 0}
    total = {0: 0, 1: 0}
    for name, label, probability in rows:
        total[label] += 1
        flagged[label] += points[name] + bayes_weight(table, probability) >= level
    return {"spam": total[1], "ham": total[0], "spam_flagged": flagged[1],
            "ham_flagged": flagged[0],
            "spam_pct": 100 * flagged[1] / max(total[1], 1),
            "ham_pct": 100 * flagged[0] / max(total[0], 1)}


def write_dump(path: Path, sets: dict[str, Scored], symbols: dict[str, dict[str, float]],
               corpus: Path) -> None:
    """One JSON line per held-out message; files named relative to the corpus."""
    with path.open("w", encoding="utf-8") as out:
        for set_name, rows in sets.items():
            for name, label, probability in rows:
                out.write(json.dumps({
                    "set": set_name, "file": str(Path(name).relative_to(corpus)),
                    "label": "spam" if label else "ham", "probability": probability,
                    "symbols": symbols[name]}) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="corpus .tar.xz")
    parser.add_argument("--jobs", type=int, default=2, help="feature extraction processes")
    parser.add_argument("--features", type=Path, default=SETTINGS,
                        help="feature and trainer settings (default: the shipped)")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--scores", type=Path, action="append", default=[],
                        help="a score file to compare with the shipped table (repeatable)")
    parser.add_argument("--tag2", type=float, default=PolicyConfig().tag2_level,
                        help="policy.tag2_level (default: the shipped)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--dump", help="also write one JSON line per held-out message: set, "
                        "file, label, probability and the other checks' symbols (shipped "
                        "table), to study what the misses carry")
    args = parser.parse_args(argv)
    if corpus_missing(args):
        return 1
    tables = {"shipped": ()} | {str(p): (str(p),) for p in args.scores}
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tag2-") as tmp:
        workdir = Path(tmp)
        dirs = extract_groups(Path(args.corpus), workdir / "corpus")
        print("classifier ...", file=sys.stderr)
        sets = held_out(dirs, args.features, args.folds, args.jobs)
        files = sorted({name for rows in sets.values() for name, _, _ in rows})
        symbols: dict[str, dict[str, float]] = {}
        for table_name, extra in tables.items():
            print(f"other checks ({table_name}) ...", file=sys.stderr)
            points = other_points(files, [Path(p) for p in extra], workdir,
                                  symbols if not extra else None)
            table = load_scores(extra)
            results[table_name] = {name: figures(rows, points, table, args.tag2)
                                   for name, rows in sets.items()}
        if args.dump:
            write_dump(Path(args.dump), sets, symbols, workdir / "corpus")
    print(f"score >= tag2_level {args.tag2}: spam caught, ham flagged "
          "(content checks only: no DNS lists, no SPF/DKIM, no ClamAV)")
    print("| score table | " + " | ".join(next(iter(results.values()))) + " |")
    print("|---|" + "---:|" * len(sets))
    for table_name, by_set in results.items():
        cells = [f"{f['spam_pct']:.1f}% spam, {f['ham_flagged']} of {f['ham']} ham "
                 f"({f['ham_pct']:.2f}%)" for f in by_set.values()]
        print(f"| {table_name} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

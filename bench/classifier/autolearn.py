#!/usr/bin/env python3
"""Does autolearning help on mail the model never saw? (``[checks.settings.bayes]
autolearn``)

Trains a model on the corpus's older folders (``easy_ham``, ``hard_ham``, ``spam``), then
feeds it the later folders (``easy_ham_2``, ``spam_2``) as a site would receive them:
half of that mail (by digest) is the stream, in the folders' order, ham and spam
interleaved; every message is analysed by the filter's other checks (rules, banned
files; the DNS checks and ClamAV are off, as no DNS list knows this mail), scored by
the model *as it is at that moment*, and learnt when :func:`scanner.ml.autolearn.decide`
says so. The other half is the test set, scored after the stream. Variants: no
learning, SpamAssassin's thresholds (ham below 0.1, spam from 12 with 3 header and
3 body points), scanner's defaults (spam only, from 8), scanner's spam thresholds with
ham learning on, and the oracle (every stream message learnt with its true label:
what users' "junk"/"not junk" feedback gives at best).

    .venv/bin/python bench/classifier/autolearn.py [--corpus X.tar.xz] [--stream-half 0|1]
        [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

from cross_period import extract_groups  # noqa: E402
from run import SETTINGS, accuracy, add_common_options, corpus_missing  # noqa: E402

from decoders.registry import load_decoders  # noqa: E402
from scanner import config as cfgmod  # noqa: E402
from scanner.checks.base import CheckContext  # noqa: E402
from scanner.mailid import new_mail_id  # noqa: E402
from scanner.ml.autolearn import Thresholds, decide  # noqa: E402
from scanner.ml.bands import bands_for  # noqa: E402
from scanner.ml.config_file import load_settings_file  # noqa: E402
from scanner.ml.corpus import Corpus, read_corpus  # noqa: E402
from scanner.ml.train import fit_model  # noqa: E402
from scanner.pipeline.processor import Listener, Processor  # noqa: E402
from scanner.registry import build_checks  # noqa: E402
from scanner.reinject.deliver import NextHop  # noqa: E402
from scanner.scores import load_scores  # noqa: E402
from scanner.task import Envelope, Hit, Recipient, Task  # noqa: E402

VARIANTS: dict[str, Thresholds | None] = {
    "no learning": None,
    "SpamAssassin's thresholds (ham < 0.1; spam >= 12, 3 header + 3 body points)":
        Thresholds(spam_above=12.0, min_header_points=3.0, min_body_points=3.0, ham=True),
    "scanner's defaults (spam >= 8, no ham)": Thresholds(),
    "scanner's spam thresholds plus ham < 0.1": Thresholds(ham=True),
}


async def other_checks_hits(tmp: Path, names: list[str]) -> tuple[list[list[Hit]], Any]:
    """Every message's hits from the checks besides the classifier, and a hit's area."""
    path = tmp / "scanner.toml"
    path.write_text('[checks]\ndisabled = ["bayes", "clamav", "auth", "dnsbl", "uribl"]\n'
                    f'[quarantine]\ndirectory = "{tmp / "q"}"\nampdp_socket = ""\n')
    config = cfgmod.load(str(path))

    async def run_cpu(func: Any, *args: Any) -> Any:
        return func(*args)

    checks = build_checks(config, CheckContext(config=config, run_cpu=run_cpu))
    processor = Processor(config, checks, load_scores(()),
                          NextHop.from_config(config.reinject, "localhost"), "localhost",
                          run_cpu=run_cpu, decoders=load_decoders())
    listener = Listener(0, "ESMTP", "")
    out = []
    for name in names:
        raw = Path(name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        task = Task(mail_id=new_mail_id(), raw=raw, log_id="bench",
                    envelope=Envelope("sender@example.org", (Recipient("u@example.test"),)))
        await processor.analyse(task, listener)
        out.append(list(task.hits))
    by_name = {c.name: c for c in checks}

    def area_of(hit: Hit) -> str | None:
        check = by_name.get(hit.source)
        symbol_area = getattr(check, "symbol_area", None)
        return symbol_area(hit.symbol) if symbol_area else getattr(check, "autolearn_area",
                                                                     None)
    return out, area_of


def stream_order(stream: Corpus) -> list[int]:
    """The stream as it would arrive: each folder in its own order (file number), ham
    and spam interleaved by their position in their folder."""
    sizes = {0: int((stream.labels == 0).sum()), 1: int((stream.labels == 1).sum())}
    position = {0: 0, 1: 0}
    keyed = []
    for i in sorted(range(len(stream.names)), key=lambda i: Path(stream.names[i]).name):
        label = int(stream.labels[i])
        keyed.append((position[label] / sizes[label], i))
        position[label] += 1
    return [i for _, i in sorted(keyed)]


def run_variant(base: Any, thresholds: Thresholds | None, stream: Corpus, order: list[int],
                hits: list[list[Hit]], area_of: Any, test: Corpus,
                oracle: bool = False) -> dict[str, Any]:
    model = copy.deepcopy(base)
    scores = load_scores(())
    learnt = {"spam": 0, "ham": 0, "spam_wrong": 0, "ham_wrong": 0, "changed": 0}
    for i in order:
        row = stream.rows[i]
        truth = bool(stream.labels[i])
        if oracle:
            label: bool | None = truth
        elif thresholds is None:
            label = None
        else:
            p = model.score(row)
            bayes = [Hit(b, source="bayes") for b in bands_for(p)]
            decision = decide(hits[i] + bayes, scores, area_of, thresholds)
            label = {"spam": True, "ham": False}.get(decision.label)
        if label is None:
            continue
        kind = "spam" if label else "ham"
        learnt[kind] += 1
        learnt[f"{kind}_wrong"] += label != truth
        learnt["changed"] += model.learn_features(stream.digests[i], row, label) == "learned"
    probabilities = np.array([model.score(r) for r in test.rows])
    labels = test.labels.astype(int)
    figures = accuracy(labels, probabilities)
    figures["spam_at_0.9"] = float(np.mean(probabilities[labels == 1] >= 0.9) * 100)
    figures["ham_at_0.9"] = float(np.mean(probabilities[labels == 0] >= 0.9) * 100)
    return figures | {"learnt": learnt}


def table(results: dict[str, dict[str, Any]], stream: Corpus, test: Corpus) -> str:
    rows = [f"stream: {stream.ham} ham, {stream.spam} spam; test: {test.ham} ham, "
            f"{test.spam} spam",
            "| variant | learnt as spam (wrongly) | learnt as ham (wrongly) | weights changed | "
            "(1-ROCA)% | recall @0.1% FPR | spam >= 0.9 | ham >= 0.9 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, f in results.items():
        n = f["learnt"]
        rows.append(f"| {name} | {n['spam']} ({n['spam_wrong']}) | {n['ham']} "
                    f"({n['ham_wrong']}) | {n['changed']} | {f['one_minus_roca_pct']:.4f} | "
                    f"{f['recall_at_0.1pct_fpr']:.2f}% | {f['spam_at_0.9']:.1f}% | "
                    f"{f['ham_at_0.9']:.2f}% |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_options(parser)
    parser.add_argument("--stream-half", type=int, choices=(0, 1), default=0,
                        help="which half of the later mail (by digest) is the stream; the "
                        "other is the test set")
    args = parser.parse_args(argv)
    if corpus_missing(args):
        return 1
    settings, options = load_settings_file(SETTINGS)
    with tempfile.TemporaryDirectory(prefix="bench-autolearn-") as tmp:
        dirs = extract_groups(Path(args.corpus), Path(tmp) / "corpus")
        train = read_corpus([str(dirs["easy_ham"]), str(dirs["hard_ham"])],
                            [str(dirs["spam"])], settings, jobs=args.jobs)
        later = read_corpus([str(dirs["easy_ham_2"])], [str(dirs["spam_2"])], settings,
                            jobs=args.jobs)
        half = np.array([d[0] % 2 for d in later.digests])
        stream = later.subset(half == args.stream_half)
        test = later.subset(half != args.stream_half)
        print(f"training on {train.ham} ham, {train.spam} spam ...", file=sys.stderr)
        base = fit_model(train, settings, options)
        print("analysing the stream with the other checks ...", file=sys.stderr)
        hits, area_of = asyncio.run(other_checks_hits(Path(tmp), stream.names))
        order = stream_order(stream)
        results = {name: run_variant(base, t, stream, order, hits, area_of, test)
                   for name, t in VARIANTS.items()}
        results["oracle (every stream message, its true label)"] = run_variant(
            base, None, stream, order, hits, area_of, test, oracle=True)
    print(table(results, stream, test))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

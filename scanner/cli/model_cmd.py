"""``scanner model info``: what a spam model file holds, as ``sa-learn --dump magic`` says
of SpamAssassin's Bayes database.

The file is read and validated as the filter reads it (a corrupt or foreign file is an
error naming it, exit 1); nothing is changed. Without ``--model`` the model the
configuration's ``[checks.settings.bayes]`` names, else the shipped one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from scanner.cli.ml_commands import config_option, model_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="show what a spam model file holds")
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ip = msub.add_parser("info", help="the model's training data, online learning, features "
                         "and file checksum")
    ip.add_argument("--model", help="model file (default: the model the configuration's "
                    "[checks.settings.bayes] uses, else the shipped one)")
    config_option(ip)
    ip.add_argument("--json", action="store_true", help="print the facts as JSON")
    ip.set_defaults(func=run_info)


def run_info(args: argparse.Namespace) -> int:
    """``scanner model info``: returns the exit code."""
    from scanner.ml.errors import ModelError
    from scanner.ml.model import Model
    from scanner.ml.modelformat import MAX_FILE_BYTES

    path = model_path(args)
    try:  # one read: the checksum shown is that of the model shown, whatever replaces it
        data = Path(path).read_bytes()
        if len(data) > MAX_FILE_BYTES:
            raise ModelError(f"{path}: model file is too large")
        model = Model.from_bytes(data, path)
    except OSError as exc:
        print(f"scanner model: {path}: cannot read model file ({exc.strerror or exc})",
              file=sys.stderr)
        return 1
    except ModelError as exc:
        print(f"scanner model: {exc}", file=sys.stderr)
        return 1
    facts = model_facts(model, data, path)
    queue = _autolearn_queue(args, path)
    if queue is not None:
        facts["autolearn_queue"] = {"directory": queue[0], "waiting": queue[1]}
    if args.json:
        print(json.dumps(facts, indent=2, sort_keys=True))
    else:
        print(render(facts))
    return 0


def _autolearn_queue(args: argparse.Namespace, path: str) -> tuple[str, int] | None:
    """The autolearn spool of the model (``[checks.settings.bayes] autolearn_spool`` of
    the configuration when it names the model, else ``MODEL.autolearn``) and how many
    messages wait there to be learnt; None when there is none."""
    from scanner.ml.autolearn_spool import queued

    spool = path + ".autolearn"
    if not args.model:
        from scanner import config as cfgmod

        config = cfgmod.load(cfgmod.resolve_path(args.config))
        spool = config.checks.settings.get("bayes", {}).get("autolearn_spool") or spool
    try:
        return spool, len(queued(spool))
    except OSError:
        return None


def model_facts(model: Any, data: bytes, path: str) -> dict[str, Any]:
    """Everything ``info`` reports, as plain data."""
    training = model.training
    online = training.get("online") or {}
    settings = model.settings.to_dict()
    nonzero = int((model.weights != 0).sum())
    return {
        "path": path,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "learner": training.get("learner", "unknown"),
        "sklearn_version": training.get("sklearn_version", ""),
        "trained_ham": int(training.get("ham", 0)),
        "trained_spam": int(training.get("spam", 0)),
        "duplicates_skipped": int(training.get("duplicates_skipped", 0)),
        "conflicts_dropped": int(training.get("conflicts_dropped", 0)),
        "corpus_sha256": training.get("corpus_sha256", ""),
        "created_epoch": training.get("created_epoch"),
        "learned_ham": int(online.get("ham", 0)),
        "learned_spam": int(online.get("spam", 0)),
        "learned_remembered": len(model.learned),
        "aggressiveness": training.get("aggressiveness"),
        "hash_bits": settings["hash_bits"],
        "nonzero_weights": nonzero,
        "value_dtype": model.value_dtype,
        "char_ngram": settings["char_ngram"],
        "word_bigrams": settings["word_bigrams"],
        "block_weights": settings["block_weights"],
        "calibration": {"method": "platt", "a": model.calibration.a, "b": model.calibration.b},
        "bias": model.bias,
    }


def render(facts: dict[str, Any]) -> str:
    """The text form of :func:`model_facts`."""
    created = facts["created_epoch"]
    blocks = ", ".join(f"{k} {v:g}" for k, v in sorted(facts["block_weights"].items()))
    buckets = 1 << facts["hash_bits"]
    lines = [
        ("model", facts["path"]),
        ("file", f"{facts['bytes']:,} bytes, SHA-256 {facts['sha256']}"),
        ("learner", facts["learner"] + (f" (scikit-learn {facts['sklearn_version']})"
                                        if facts["sklearn_version"] else "")),
        ("trained on", f"{facts['trained_ham']:,} ham, {facts['trained_spam']:,} spam "
                       f"({facts['duplicates_skipped']:,} duplicates skipped, "
                       f"{facts['conflicts_dropped']:,} given as both left out)"),
        ("corpus", f"SHA-256 {facts['corpus_sha256'] or 'not recorded'}"),
        ("created", f"epoch {created}" if created is not None
         else "not recorded (set SOURCE_DATE_EPOCH when training to record it)"),
        ("learned since", f"{facts['learned_ham']:,} ham, {facts['learned_spam']:,} spam "
                          "(scanner learn, train --update, autolearn); "
                          f"{facts['learned_remembered']:,} message digests remembered"),
        ("features", f"{facts['nonzero_weights']:,} non-zero weights in {buckets:,} buckets "
                     f"({facts['value_dtype']}); character {facts['char_ngram']}-grams, word "
                     f"bigrams {'on' if facts['word_bigrams'] else 'off'}"),
        ("blocks", blocks),
        ("calibration", f"Platt a={facts['calibration']['a']:.6g} "
                        f"b={facts['calibration']['b']:.6g}, bias {facts['bias']:.6g}"),
    ]
    queue = facts.get("autolearn_queue")
    if queue is not None:
        lines.append(("autolearn", f"{queue['waiting']:,} message(s) queued in "
                                   f"{queue['directory']}, learnt every autolearn_interval"))
    return "\n".join(f"{name + ':':<15}{value}" for name, value in lines)

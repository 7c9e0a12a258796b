"""``scanner train``, ``scanner eval`` and ``scanner learn``: the spam model's commands.

Wiring only; the work is in :mod:`scanner.ml`. Each ``add_*_parser`` registers one
sub-command whose ``func(args)`` returns the exit code: 0 on success, 1 when the job
could not be done (nothing readable, one class only, a bad model file), 2 for usage.
Run ``python -m scanner.cli.ml_commands train ...`` without the main dispatcher.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from scanner.bounded import open_without_waiting, read_at_most, read_stdin_at_most
from scanner.errors import ConfigError
from scanner.ml.errors import ModelError, TrainingError
from scanner.ml.shipped import shipped_model_path

if TYPE_CHECKING:
    from scanner.ml.corpus import Corpus
    from scanner.ml.features import FeatureSettings

DEFAULT_MODEL_PATH = shipped_model_path()
_MAX_STDIN = 64 << 20


def _err(message: str) -> None:
    print(f"scanner: {message}", file=sys.stderr)


def _count(text: str) -> int:
    """``--jobs``: 0 (one per CPU) or more."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 for one per CPU, "
                                         "or a number of processes")
    return value


def _folds(text: str) -> int:
    """``--folds``: at least 2 (whether the classes are that large is checked later)."""
    value = _whole_number(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value}: cross-validation needs at least 2 folds")
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _probability(text: str) -> float:
    """``--threshold``: a probability, 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not a probability between 0 and 1")
    return value


def config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="configuration whose [checks.settings.bayes] "
                        "model is the default --model (default: as for serve)")


def model_path(args: argparse.Namespace) -> str:
    """``--model``, else the configuration's bayes model, else the shipped model: by
    default the commands work on the model the filter started with that configuration
    reads."""
    if args.model:
        return str(args.model)
    from scanner import config as cfgmod

    config = cfgmod.load(cfgmod.resolve_path(args.config))
    configured = config.checks.settings.get("bayes", {}).get("model", "")
    if configured and not isinstance(configured, str):
        raise ConfigError(f"{config.source}: checks.settings.bayes.model must be a file name")
    return configured or str(DEFAULT_MODEL_PATH)


def _jobs(args: argparse.Namespace) -> int:
    from scanner.ml.corpus import default_jobs

    return args.jobs if args.jobs > 0 else default_jobs()


def _common(parser: argparse.ArgumentParser) -> None:
    # "extend": --ham A --ham B reads both (with nargs="+" alone the last one won silently)
    parser.add_argument("--ham", nargs="+", action="extend", default=[], metavar="PATH",
                        help="ham: Maildir, mbox, MH folder, directory, .gz/.xz, tar[#prefix]; "
                        "several paths, or the option repeated")
    parser.add_argument("--spam", nargs="+", action="extend", default=[], metavar="PATH",
                        help="spam: as --ham")
    parser.add_argument("--jobs", type=_count, default=0,
                        help="processes for feature extraction and for fitting (default: "
                        "one per CPU; each fitting process holds a copy of the training "
                        "matrix)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``scanner train``."""
    parser = subparsers.add_parser(
        "train", help="train the spam model from ham and spam mailboxes",
        description="Train (or with --update, continue training) the spam classifier.")
    _common(parser)
    parser.add_argument("--model", help="model file to write (default: the model the "
                        "configuration's [checks.settings.bayes] uses, else the shipped one)")
    config_option(parser)
    parser.add_argument("--update", action="store_true",
                        help="continue training the existing --model with this mail")
    parser.add_argument("--features", metavar="TOML",
                        help="feature and trainer settings file (new models only)")
    parser.set_defaults(func=run_train)
    return parser


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``scanner eval``."""
    from scanner.ml.evaluate import DEFAULT_THRESHOLD

    parser = subparsers.add_parser(
        "eval", help="measure the spam model (ROC AUC, recall at low false-positive rates)",
        description="Score labelled mail with --model, or cross-validate with --folds K.")
    _common(parser)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", help="model to evaluate (default: the configured model, "
                       "else the shipped one)")
    group.add_argument("--folds", type=_folds, help="stratified K-fold cross-validation "
                       "(K at least 2)")
    parser.add_argument("--features", metavar="TOML", help="settings for --folds training")
    parser.add_argument("--threshold", type=_probability, default=DEFAULT_THRESHOLD,
                        help=f"probability counted as spam (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--config", "-c", help="TOML file whose policy.tag2_level, "
                        "checks.score_files and bayes model are used (default: as for serve)")
    parser.set_defaults(func=run_eval)
    return parser


def add_learn_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``scanner learn``."""
    parser = subparsers.add_parser(
        "learn", help="learn one message as spam or ham (IMAPSieve hooks)",
        description="Update the model with one message read from FILE or stdin.")
    label = parser.add_mutually_exclusive_group(required=True)
    label.add_argument("--spam", action="store_true", help="the message is spam")
    label.add_argument("--ham", action="store_true", help="the message is ham")
    parser.add_argument("file", nargs="?", default="-", help="message file, - for stdin")
    parser.add_argument("--model", help="model file (default: the model the configuration's "
                        "[checks.settings.bayes] uses, else the shipped one)")
    config_option(parser)
    parser.add_argument("--verbose", action="store_true", help="say what happened")
    parser.set_defaults(func=run_learn)
    return parser


def _problem(name: str, reason: str) -> None:
    _err(f"skipped {name}: {reason}")


def _read(args: argparse.Namespace, settings: FeatureSettings, label: str) -> Corpus:
    from scanner.ml.corpus import read_corpus
    from scanner.ml.progress import Progress

    if not args.ham and not args.spam:
        raise TrainingError("give at least one --ham or --spam path")
    progress = None if args.quiet else Progress(label)
    corpus = read_corpus(args.ham, args.spam, settings, jobs=args.jobs,
                         on_problem=_problem, progress=progress)
    if not corpus.labels.size:
        if corpus.conflicts:
            raise TrainingError(f"every message was given as both ham and spam "
                                f"({corpus.conflicts} filed as both are left out); give "
                                "different paths to --ham and --spam")
        raise TrainingError("no readable messages in the given paths")
    return corpus


def run_train(args: argparse.Namespace) -> int:
    """``scanner train``: returns the exit code."""
    from scanner.ml.config_file import load_settings_file
    from scanner.ml.learn import model_lock, replace_model
    from scanner.ml.model import load_model, save_model
    from scanner.ml.train import fit_model, update_model

    started = time.monotonic()
    try:
        path = model_path(args)
    except ConfigError as exc:
        _err(str(exc))
        return 2
    if problem := _unwritable_model(path):  # say so before minutes of training
        _err(f"{path}: {problem}")
        return 1
    try:
        if args.update:
            if args.features:
                _err("--features is ignored with --update (the model keeps its settings)")
            settings = load_model(path).settings
            corpus = _read(args, settings, "reading")
            with model_lock(path):
                model = load_model(path)
                if model.settings != settings:
                    raise ModelError(f"{path}: the model changed while reading mail")
                counts = update_model(model, corpus)
                save_model(model, path)
            summary = ", ".join(f"{v} {k}" for k, v in counts.items())
        else:
            settings, options = load_settings_file(args.features)
            corpus = _read(args, settings, "reading")
            if not args.quiet:
                print(f"training on {corpus.labels.size} messages (the learners, then "
                      f"{options.calibration_folds} calibration folds)", file=sys.stderr)
            model = fit_model(corpus, settings, options, jobs=_jobs(args))
            replace_model(model, path)
            summary = f"trained on {corpus.ham} ham and {corpus.spam} spam"
    except (ModelError, TrainingError, FileNotFoundError) as exc:
        _err(str(exc))
        return 1
    data = Path(path).read_bytes()
    print(f"{path}: {summary}; {corpus.duplicates} duplicates, {corpus.conflicts} "
          f"filed as both, {corpus.problems} unreadable skipped; {len(data)} bytes, sha256 "
          f"{hashlib.sha256(data).hexdigest()[:16]}, {time.monotonic() - started:.1f}s")
    return 0


def _unwritable_model(path: str) -> str | None:
    """Why a model file could not be written at ``path`` (checked before training), or
    None. The model is written next to itself and renamed, so its directory counts."""
    if os.path.isdir(path):
        return "is a directory; give a file name (e.g. /var/lib/scanner/site.model)"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"cannot write the model file: {directory} is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return (f"cannot write the model file: no permission to create files in {directory}; "
                "run as the user who owns it or choose another --model")
    return None


def run_eval(args: argparse.Namespace) -> int:
    """``scanner eval``: returns the exit code."""
    from scanner.ml.config_file import load_settings_file
    from scanner.ml.evaluate import cross_validate, report, score_rows
    from scanner.ml.model import load_model

    try:
        tag2 = _tag2_weights(args.config)
    except ConfigError as exc:
        _err(str(exc))
        return 2
    try:
        if args.folds:
            settings, options = load_settings_file(args.features)
            corpus = _read(args, settings, "reading")

            def on_fold(fold: int, total: int) -> None:
                if not args.quiet:
                    print(f"fold {fold}/{total} done", file=sys.stderr)

            probabilities = cross_validate(corpus, settings, options, args.folds, on_fold,
                                           jobs=_jobs(args))
            method = f"{args.folds}-fold cross-validation"
        else:
            path = model_path(args)
            model = load_model(path)
            corpus = _read(args, model.settings, "reading")
            probabilities = score_rows(model, corpus)
            method = f"model {path}"
    except (ModelError, TrainingError, FileNotFoundError, ValueError) as exc:
        _err(str(exc))
        return 1
    missing = [name for label, name in ((0, "ham"), (1, "spam"))
               if not (corpus.labels == label).any()]
    if missing:  # ROC AUC and recall at a false-positive rate need both classes
        _err(f"no readable {missing[0]} among the messages given: eval needs ham and spam "
             f"(--ham PATH... --spam PATH...)")
        return 1
    result = report(corpus.labels, probabilities, args.threshold, method, tag2)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        print(result.text())
    return 0


def _tag2_weights(path: str | None) -> tuple[float, Callable[[float], float]]:
    """policy.tag2_level and the BAYES_* weight of a probability, from the config."""
    from functools import partial

    from scanner import config as cfgmod
    from scanner.ml.evaluate import bayes_weight
    from scanner.scores import load_scores

    config = cfgmod.load(cfgmod.resolve_path(path))
    return config.policy.tag2_level, partial(bayes_weight,
                                             load_scores(config.checks.score_files))


def run_learn(args: argparse.Namespace) -> int:
    """``scanner learn``: returns the exit code."""
    from scanner.ml.learn import learn_message

    try:
        if args.file == "-":
            raw = read_stdin_at_most(_MAX_STDIN)
        else:
            with open_without_waiting(args.file) as handle:
                raw = read_at_most(handle, _MAX_STDIN)
    except OSError as exc:
        _err(f"{args.file}: cannot read ({exc.strerror})")
        return 1
    name = "standard input" if args.file == "-" else args.file
    if not raw.strip():
        _err(f"{name}: empty message, nothing learned")
        return 1
    if problem := _not_a_message(raw):
        _err(f"{name}: {problem}; nothing learned")
        return 1
    try:
        path = model_path(args)
    except ConfigError as exc:
        _err(str(exc))
        return 2
    try:
        outcome = learn_message(path, raw, spam=bool(args.spam))
    except ModelError as exc:
        _err(str(exc))
        return 1
    if args.verbose:
        print(f"{path}: {outcome} as {'spam' if args.spam else 'ham'}", file=sys.stderr)
    return 0


_COMPRESSED = (b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh", b"PK\x03\x04", b"\x28\xb5\x2f\xfd")
_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")


def _not_a_message(raw: bytes) -> str | None:
    """Why ``raw`` cannot be one mail message (learning it would teach the model
    noise), or None. ``train`` reads compressed mailboxes; ``learn`` takes one message."""
    if raw.startswith(_COMPRESSED):
        return ("a compressed file or archive, not a message (decompress it first: "
                "zcat FILE | scanner learn --spam -)")
    first = raw.lstrip(b"\r\n")
    if first.startswith(b"From "):  # an mbox separator line
        first = first.split(b"\n", 1)[1] if b"\n" in first else b""
    if not _FIELD.match(first):
        return "does not start with header lines (Name: value), so it is not a mail message"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point with only the train, eval and learn sub-commands."""
    parser = argparse.ArgumentParser(prog="scanner")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(sub)
    add_eval_parser(sub)
    add_learn_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``scanner rules list|test|lint``: inspect rules, try them on one message, check a directory.

    scanner rules list [--config F] [--all]      rules of the configured set, with scores
    scanner rules test FILE [--config F]         which rules hit one message, and the score
    scanner rules lint DIR... [--no-shipped]     load directories, print every problem

Rule sources are those of ``[checks.settings.rules]`` in the configuration (shipped set,
``sa_compat_paths``, ``dirs``); ``--dir`` adds directories for this run. ``lint`` exits 1
when a rule could not be loaded.

``test`` runs the rules as the daemon's rules check does (:func:`try_rules`); what it
cannot know is said in :data:`TEST_DESCRIPTION` (its ``--help``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scanner.checks.rules import (
    RulesSettings,
    bad_header_hits,
    cache_dir,
    declare,
    message_view,
    relay_networks,
    view_limits,
)
from scanner.cli.scan_cmd import envelope_sender, read_input
from scanner.config import Config, load, resolve_path
from scanner.config.schema import build
from scanner.mailid import new_mail_id
from scanner.pipeline.parse import parse_headers
from scanner.pipeline.unpack import unpack_now
from scanner.rules.compiler import RuleSet
from scanner.rules.engine import Result, evaluate
from scanner.rules.loader import load_rules
from scanner.rules.uris import text_uri_regex
from scanner.scores import ScoreTable, load_scores
from scanner.task import Envelope, Hit, Task

TEST_DESCRIPTION = """\
Run the rules on one message as the daemon's rules check does: the part tree of the
pipeline's own parse and unpack stages under the configuration's [decode] settings,
the check's size limits and time budget, and the weights of the score table
(checks.score_files win over a rule's own score).

What only the SMTP session tells, it takes as the daemon would for a message with no
envelope: a null sender (EnvelopeFrom rules then read Return-Path and the like, as
SpamAssassin does; --sender gives one) and no SMTPUTF8 (--smtputf8). The client
address, HELO and XFORWARD fields are read by no rule. The file is taken byte for
byte: LF line ends are not turned into the CRLF Postfix sends, and no Received header
of Postfix's is added. Only the rules and BAD-HEADER checks run (no ClamAV, DNS
lists, SPF/DKIM/DMARC or classifier: 'scanner scan' runs every check); the rules
themselves never use the network. Compiled Hyperscan databases are read from (and
missing ones written to) the check's cache_dir, as the daemon does."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("rules", help="inspect, try and check SpamAssassin-style rules",
                            description=__doc__.split("\n\n")[0])
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    rsub = parser.add_subparsers(dest="rules_command", metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="configuration file (default: the usual lookup)")
        p.add_argument("--dir", action="append", default=[], help="extra rule directory")
        p.add_argument("--no-shipped", action="store_true", help="leave out scanner/rules/cf")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p_list = rsub.add_parser("list", help="list the loaded rules")
    common(p_list)
    p_list.add_argument("--all", action="store_true", help="include __ sub-rules and score 0")
    p_list.set_defaults(func=_list)
    p_test = rsub.add_parser(
        "test", help="run the rules on one message file, as the daemon's rules check",
        description=TEST_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p_test)
    p_test.add_argument("file", help="message file (RFC 822), '-' for standard input")
    p_test.add_argument("--values", action="store_true", help="also show sub-rule values")
    p_test.add_argument("--sender", default="", metavar="ADDRESS",
                        help="envelope sender as the daemon would get it (default: none, "
                             "a null sender; EnvelopeFrom rules then read Return-Path "
                             "and the like)")
    p_test.add_argument("--smtputf8", action="store_true",
                        help="as if the sender gave SMTPUTF8 (8-bit header text is then "
                             "no BAD-HEADER)")
    p_test.set_defaults(func=_test)
    p_lint = rsub.add_parser("lint", help="load rule directories and report problems")
    p_lint.add_argument("dirs", nargs="+", help="rule directories or single .cf files")
    p_lint.add_argument("--shipped", action="store_true", help="load the shipped set first")
    p_lint.add_argument("--json", action="store_true", help="machine-readable output")
    p_lint.set_defaults(func=_lint)


def _settings(args: argparse.Namespace, config: Config | None = None) -> RulesSettings:
    config = config or load(resolve_path(args.config))
    raw = config.checks.settings.get("rules", {})
    return build(RulesSettings, raw, "checks.settings.rules", config.source)


def _ruleset(args: argparse.Namespace,
             config: Config | None = None) -> tuple[RuleSet, RulesSettings]:
    s = _settings(args, config)
    rs = load_rules(list(s.sa_compat_paths) + list(s.dirs) + list(args.dir),
                    shipped=s.shipped and not args.no_shipped, score_set=s.score_set,
                    use_hyperscan=s.hyperscan, cache_dir=cache_dir(s))
    return rs, s


def _missing_dir(args: argparse.Namespace) -> bool:
    """A mistyped --dir would list or test the other rules without a word: say so."""
    missing = [d for d in args.dir if not Path(d).is_dir()]
    if missing:
        print(f"scanner rules: {missing[0]}: no such rule directory", file=sys.stderr)
    return bool(missing)


def _list(args: argparse.Namespace) -> int:
    if _missing_dir(args):
        return 1
    rs, _ = _ruleset(args)
    rules = sorted(rs.by_name.values(), key=lambda r: r.name)
    if not args.all:
        rules = [r for r in rules if r.reported]
    if args.json:
        print(json.dumps([{"name": r.name, "type": r.kind, "score": r.score,
                           "description": r.description, "file": r.file, "line": r.line}
                          for r in rules], indent=1))
        return 0
    for r in rules:
        print(f"{r.name:32} {r.kind:10} {r.score:7.3f}  {r.description}")
    print(f"# {len(rules)} rules; {len(rs.problems)} problems (scanner rules lint)",
          file=sys.stderr)
    return 0


@dataclass(slots=True)
class Trial:
    """What the rules check would add for one message: rule hits with the weights the
    daemon's score table gives them, BAD-HEADER hits, and the evaluation itself."""

    result: Result
    weights: dict[str, float]
    bad: list[Hit]
    seconds: float

    @property
    def score(self) -> float:
        return round(sum(self.weights[h.name] * h.count for h in self.result.hits), 3)


def try_rules(raw: bytes, config: Config, rs: RuleSet, settings: RulesSettings,
              scores: ScoreTable, sender: str = "", smtputf8: bool = False) -> Trial:
    """Run the rules on ``raw`` as the daemon's rules check does: the part tree of the
    pipeline's own parse and unpack stages for ``config``, the check's view of the
    message, and the weights of the score table (``checks.score_files`` win over a
    rule's own score). ``sender`` "" is a null envelope sender."""
    task = Task(mail_id=new_mail_id(), raw=raw, log_id="rules-test",
                envelope=Envelope(sender, (), smtputf8=smtputf8))
    task.message = parse_headers(raw)
    declare(rs)
    unpacked = unpack_now(task, config)
    try:
        view = message_view(task, rs, text_uri_regex(rs.tlds), view_limits(settings),
                            relay_networks(settings, config))
        started = time.monotonic()
        result = evaluate(rs, view, settings.time_budget)
        elapsed = time.monotonic() - started
    finally:
        if unpacked is not None:
            unpacked.close()
    bad = bad_header_hits(task) if settings.bad_header else []
    weights = {h.name: scores.get(h.name).weight for h in result.hits}
    return Trial(result, weights, bad, elapsed)


def _test(args: argparse.Namespace) -> int:
    if _missing_dir(args):
        return 1
    config = load(resolve_path(args.config))
    rs, s = _ruleset(args, config)
    raw = read_input(args.file)
    if raw is None:
        return 1
    trial = try_rules(raw, config, rs, s, load_scores(config.checks.score_files),
                      sender=envelope_sender(args.sender), smtputf8=args.smtputf8)
    result = trial.result
    if args.json:
        print(json.dumps({
            "score": trial.score, "ms": round(trial.seconds * 1000, 2),
            "hits": [{"rule": h.name, "score": trial.weights[h.name], "count": h.count,
                      "type": h.kind, "description": h.description} for h in result.hits],
            "bad_header": [{"symbol": h.symbol, "options": list(h.options)}
                           for h in trial.bad],
            "timed_out": result.timed_out,
            "values": result.values if args.values else None}, indent=1))
        return 0
    for h in result.hits:
        times = f" x{h.count}" if h.count > 1 else ""
        print(f"{trial.weights[h.name] * h.count:7.3f} {h.name}{times}  {h.description}")
    for b in trial.bad:
        print(f"  BAD-HEADER {b.symbol}: {', '.join(b.options)}")
    if result.timed_out:
        print(f"RULES_TIMEOUT: time budget exhausted in {result.timed_out}")
    if args.values:
        for name, value in sorted(result.values.items()):
            if name.startswith("__"):
                print(f"    {name} = {value:g}")
    print(f"score {trial.score:.3f} from {len(result.hits)} rules in "
          f"{trial.seconds * 1000:.1f} ms")
    return 0


def _lint(args: argparse.Namespace) -> int:
    dirs = [d for d in args.dirs if Path(d).is_dir()]
    files = [f for f in args.dirs if not Path(f).is_dir()]
    rs = load_rules(dirs, shipped=args.shipped, files=files)
    summary = rs.stats.summary()
    if args.json:
        print(json.dumps({"summary": summary, "problems": [
            {"file": p.file, "line": p.line, "rule": p.rule, "message": p.message}
            for p in rs.problems], "unknown_directives": [
            {"file": p.file, "line": p.line, "message": p.message} for p in rs.unknown]},
            indent=1))
    else:
        for p in [*rs.problems, *rs.unknown]:
            print(p)
        print(f"{summary['loaded']} of {summary['defined_non_eval']} rules loaded "
              f"({summary['loaded_pct']}%), by type {summary['by_type']}; "
              f"{summary['eval_rules_skipped']} eval/plugin rules skipped; "
              f"untranslatable regex features: {summary['untranslatable'] or 'none'}; "
              f"{len(rs.problems)} problems; {len(rs.unknown)} unknown directives ignored")
    failed = sum(rs.stats.failed.values()) or any(p.line == 0 for p in rs.problems)
    return 1 if failed else 0

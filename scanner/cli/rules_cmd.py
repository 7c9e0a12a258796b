"""``scanner rules list|test|lint``: inspect rules, try them on one message, check a directory.

    scanner rules list [--config F] [--all]      rules of the configured set, with scores
    scanner rules test FILE [--config F]         which rules hit one message, and the score
    scanner rules lint DIR... [--no-shipped]     load directories, print every problem

Rule sources are those of ``[checks.settings.rules]`` in the configuration (shipped set,
``sa_compat_paths``, ``dirs``); ``--dir`` adds directories for this run. ``lint`` exits 1
when a rule could not be loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from scanner.cli.scan_cmd import read_input
from scanner.config import load, resolve_path
from scanner.config.schema import build
from scanner.rules import badheader
from scanner.rules.compiler import RuleSet
from scanner.rules.engine import evaluate
from scanner.rules.loader import load_rules
from scanner.rules.uris import text_uri_regex
from scanner.rules.views import MessageView, ViewLimits


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
    p_test = rsub.add_parser("test", help="run the rules on one message file")
    common(p_test)
    p_test.add_argument("file", help="message file (RFC 822), '-' for standard input")
    p_test.add_argument("--values", action="store_true", help="also show sub-rule values")
    p_test.set_defaults(func=_test)
    p_lint = rsub.add_parser("lint", help="load rule directories and report problems")
    p_lint.add_argument("dirs", nargs="+", help="rule directories or single .cf files")
    p_lint.add_argument("--shipped", action="store_true", help="load the shipped set first")
    p_lint.add_argument("--json", action="store_true", help="machine-readable output")
    p_lint.set_defaults(func=_lint)


def _settings(args: argparse.Namespace):  # -> RulesSettings
    from scanner.checks.rules import RulesSettings
    config = load(resolve_path(args.config))
    raw = config.checks.settings.get("rules", {})
    return build(RulesSettings, raw, "checks.settings.rules", config.source)


def _ruleset(args: argparse.Namespace) -> tuple[RuleSet, object]:
    s = _settings(args)
    rs = load_rules(list(s.sa_compat_paths) + list(s.dirs) + list(args.dir),
                    shipped=s.shipped and not args.no_shipped, score_set=s.score_set,
                    use_hyperscan=s.hyperscan)
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


def _test(args: argparse.Namespace) -> int:
    if _missing_dir(args):
        return 1
    rs, s = _ruleset(args)
    raw = read_input(args.file)
    if raw is None:
        return 1
    view = MessageView(raw, limits=ViewLimits(s.body_part_scan_size, s.rawbody_part_scan_size,
                                              s.max_uris),
                       uri_finder=text_uri_regex(rs.tlds), redirectors=rs.redirectors)
    started = time.monotonic()
    result = evaluate(rs, view, s.time_budget)
    elapsed = time.monotonic() - started
    bad = badheader.check(raw) if s.bad_header else []
    if args.json:
        print(json.dumps({
            "score": result.score, "ms": round(elapsed * 1000, 2),
            "hits": [{"rule": h.name, "score": h.score, "count": h.count, "type": h.kind,
                      "description": h.description} for h in result.hits],
            "bad_header": [{"symbol": h.symbol, "options": list(h.options)} for h in bad],
            "timed_out": result.timed_out,
            "values": result.values if args.values else None}, indent=1))
        return 0
    for h in result.hits:
        times = f" x{h.count}" if h.count > 1 else ""
        print(f"{h.score * h.count:7.3f} {h.name}{times}  {h.description}")
    for h in bad:
        print(f"  BAD-HEADER {h.symbol}: {', '.join(h.options)}")
    if result.timed_out:
        print(f"RULES_TIMEOUT: time budget exhausted in {result.timed_out}")
    if args.values:
        for name, value in sorted(result.values.items()):
            if name.startswith("__"):
                print(f"    {name} = {value:g}")
    print(f"score {result.score:.3f} from {len(result.hits)} rules in {elapsed * 1000:.1f} ms")
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

"""Load rule directories into a compiled :class:`RuleSet` (once, at start or reload).

Order: the shipped rules (``scanner/rules/cf/``) unless disabled, then each admin
directory in the order given (``*.pre`` then ``*.cf`` in name order), then single
files. Later definitions and ``score`` lines override earlier ones, so an admin
directory can rescore or replace a shipped rule. Nothing here raises for a bad rule:
problems are collected with file and line in ``RuleSet.problems``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from scanner.rules.cfparser import read_files, rule_files
from scanner.rules.compiler import RuleSet, compile_ruleset
from scanner.rules.conditions import Conditions
from scanner.rules.model import ParsedConfig, Problem

log = logging.getLogger("scanner.rules")

SHIPPED_DIR = Path(__file__).resolve().parent / "cf"


def collect_paths(dirs: Sequence[str | Path], shipped: bool = True,
                  files: Sequence[str | Path] = ()) -> tuple[list[Path], list[Problem]]:
    """The rule files to read, in order, and problems with missing directories."""
    paths: list[Path] = []
    problems: list[Problem] = []
    if shipped:
        paths.extend(rule_files(SHIPPED_DIR))
    for d in dirs:
        directory = Path(d)
        if not directory.is_dir():
            problems.append(Problem(str(directory), 0, "rule directory does not exist"))
            continue
        paths.extend(rule_files(directory))
    for f in files:
        paths.append(Path(f))
    return paths, problems


def load_rules(dirs: Sequence[str | Path] = (), shipped: bool = True,
               files: Sequence[str | Path] = (), score_set: int = 0,
               use_hyperscan: bool = True, cache_dir: str | Path | None = None) -> RuleSet:
    """Read and compile; log a one-line summary."""
    started = time.monotonic()
    paths, problems = collect_paths(dirs, shipped, files)
    cfg = ParsedConfig()
    cfg.problems.extend(problems)
    read_files(paths, cfg, Conditions(cfg.plugins))
    rs = compile_ruleset(cfg, score_set=score_set, use_hyperscan=use_hyperscan,
                         cache_dir=Path(cache_dir) if cache_dir else None)
    summary = rs.stats.summary()
    log.info("rules: %d loaded of %d (%s%%) from %d files in %.1f s; %d problems",
             summary["loaded"], summary["defined_non_eval"], summary["loaded_pct"],
             len(cfg.files), time.monotonic() - started, len(rs.problems))
    return rs

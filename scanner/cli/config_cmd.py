"""``scanner config check|show`` and ``scanner postfix-config``."""

from __future__ import annotations

import argparse

from scanner import config as cfgmod
from scanner.checks.base import CheckContext
from scanner.registry import build_checks
from scanner.scores import load_scores


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check or show the configuration")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, text in (("check", _check, "validate a configuration file"),
                             ("show", _show, "print the effective configuration"),
                             ("keys", _keys, "print every key with default and meaning")):
        cp = csub.add_parser(name, help=text)
        cp.add_argument("file", nargs="?", help="TOML file (default: as for serve)")
        cp.set_defaults(func=func)
    pf = sub.add_parser("postfix-config", help="print matching main.cf/master.cf stanzas")
    pf.add_argument("--config", "-c", help="TOML file (default: as for serve)")
    pf.set_defaults(func=_postfix)


def _load(path: str | None) -> cfgmod.Config:
    return cfgmod.load(cfgmod.resolve_path(path))


def preflight(config: cfgmod.Config) -> list:
    """Build every enabled check and read the score files once, as ``scanner serve``
    does at start-up, so a bad check setting or score file stops here with its name."""
    async def no_cpu(*_args: object) -> None:
        return None

    checks = build_checks(config, CheckContext(config=config, run_cpu=no_cpu))
    load_scores(config.checks.score_files)
    return checks


def _check(args: argparse.Namespace) -> int:
    config = _load(args.file)
    checks = preflight(config)
    print(f"{config.source}: OK ({len(config.listeners)} listener(s), checks: "
          f"{', '.join(c.name for c in checks) or 'none'})")
    return 0


def _show(args: argparse.Namespace) -> int:
    print(cfgmod.render(_load(args.file)), end="")
    return 0


def _keys(args: argparse.Namespace) -> int:
    print(cfgmod.reference(), end="")
    return 0


def _postfix(args: argparse.Namespace) -> int:
    from scanner.postfix_config import render_stanzas

    print(render_stanzas(_load(args.config)), end="")
    return 0

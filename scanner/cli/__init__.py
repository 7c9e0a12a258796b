"""The ``scanner`` command line: one sub-command per job, wiring only, no logic."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from scanner import __version__
from scanner.cli import config_cmd, scan_cmd, serve_cmd, status_cmd
from scanner.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scanner", description="Content filter for Postfix: scan, tag, quarantine, reinject.")
    parser.add_argument("--version", action="version", version=f"scanner {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_cmd.add_parser(sub)
    config_cmd.add_parsers(sub)
    scan_cmd.add_parser(sub)
    status_cmd.add_parser(sub)
    _optional_commands(sub)
    return parser


def _optional_commands(sub: argparse._SubParsersAction) -> None:
    """Sub-commands of components that may not be installed in every build."""
    try:
        from scanner.cli import dkim_cmd
    except ImportError:
        pass
    else:
        dkim_cmd.add_parser(sub)
    try:
        from scanner.cli import quarantine_cmd
    except ImportError:
        pass
    else:
        quarantine_cmd.add_parser(sub)
    try:
        from scanner.cli import rules_cmd
    except ImportError:
        pass
    else:
        rules_cmd.add_parser(sub)
    try:
        from scanner.cli import ml_commands
    except ImportError:
        return
    for name in ("add_train_parser", "add_eval_parser", "add_learn_parser"):
        add = getattr(ml_commands, name, None)
        if add is not None:
            add(sub)
    from scanner.cli import model_cmd

    model_cmd.add_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"scanner: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

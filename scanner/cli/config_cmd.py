"""``scanner config check|show`` and ``scanner postfix-config``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import grp
import os
import sys
from typing import Any

from scanner import config as cfgmod
from scanner.checks.base import CheckContext, LastGood
from scanner.errors import ConfigError
from scanner.notices import load_templates, templates_key
from scanner.registry import build_checks, close_checks, effective_check_settings
from scanner.scores import ScoreTable, load_scores


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check or show the configuration")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, text in (("check", _check, "validate a configuration file"),
                             ("show", _show, "print the effective configuration"),
                             ("keys", _keys, "print every key with default and meaning")):
        cp = csub.add_parser(name, help=text)
        cp.add_argument("file", nargs="?", help="TOML file (default: as for serve)")
        cp.set_defaults(func=func)
    fa = csub.add_parser("from-amavis", help="write a scanner configuration from an "
                         "amavis one (Debian's conf.d directories by default)")
    fa.add_argument("paths", nargs="*", metavar="PATH",
                    help="amavis configuration files or conf.d directories, read in the "
                         "order given (default: /usr/share/amavis/conf.d and "
                         "/etc/amavis/conf.d, else /etc/amavisd.conf)")
    fa.add_argument("--output", "-o", help="write the TOML here instead of standard output "
                                           "(an existing file is not overwritten)")
    fa.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="give a Perl scalar a value before reading, e.g. "
                         "--set mydomain=example.com when /etc/mailname is missing")
    fa.set_defaults(func=_from_amavis)
    pf = sub.add_parser("postfix-config", help="print matching main.cf/master.cf stanzas")
    pf.add_argument("--config", "-c", help="TOML file (default: as for serve)")
    pf.add_argument("--part", choices=("main", "master"), default="",
                    help="print only the main.cf lines or only the master.cf services")
    mode = pf.add_mutually_exclusive_group()
    mode.add_argument("--milter", action="store_true",
                      help="print the before-queue settings for amavisd-milter (smtpd_milters, "
                           "its command line) instead of the content_filter ones")
    mode.add_argument("--proxy", action="store_true",
                      help="print the before-queue settings for Postfix's smtpd_proxy_filter "
                           "(the public smtpd hands mail to the listener before queueing it) "
                           "instead of the content_filter ones")
    pf.add_argument("--service", metavar="NAME/TYPE", type=_public_service,
                    help="with --proxy: the public smtpd service to give the proxy "
                         "(default smtp/inet; smtpd/pass behind postscreen)")
    pf.set_defaults(func=_postfix)


def _public_service(text: str) -> str:
    """``--service``: a public smtpd service as postconf names it (usage error else)."""
    from scanner.postfix_proxy import check_service

    try:
        check_service(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _load(path: str | None) -> cfgmod.Config:
    return cfgmod.load(cfgmod.resolve_path(path))


def preflight(config: cfgmod.Config,
              last_good: LastGood | None = None) -> tuple[list, ScoreTable]:
    """Build every enabled check and read the score files once, as ``scanner serve``
    does at start-up (and check the notice templates), so a bad check setting, score
    file or template stops here with its name;
    the checks and the score table. What the checks load (and the templates) is kept in
    ``last_good``, and
    serve hands the score table to every worker it forks (score files are read at
    start only)."""
    async def no_cpu(*_args: object) -> None:
        return None

    try:
        templates = load_templates(config.notices.templates_dir)
    except ConfigError as exc:
        raise ConfigError(f"{config.source}: {exc}") from None
    if last_good is not None:  # serve's workers take them from there
        last_good.keep(templates_key(config.notices.templates_dir), templates)
    checks = build_checks(config, CheckContext(config=config, run_cpu=no_cpu,
                                               last_good=last_good or LastGood()))
    return checks, load_scores(config.checks.score_files)


def probe_checks(checks: list, timeout: float = 5.0) -> list[str]:
    """Ask the checks that can look at their services (``async probe() -> str | None``,
    e.g. clamd answering PING) whether they work; the problems found, by check."""
    async def one(check: Any) -> str | None:
        try:
            async with asyncio.timeout(timeout):
                return await check.probe()
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except Exception as exc:  # a probe must never stop start-up
            return f"probe failed: {exc}"

    async def every() -> list[str]:
        probes = [c for c in checks if callable(getattr(c, "probe", None))]
        found = await asyncio.gather(*(one(c) for c in probes))
        return [f"{c.name}: {problem}" for c, problem in zip(probes, found, strict=True)
                if problem]

    try:
        return asyncio.run(every())
    finally:
        close_checks(checks)


def check_paths(config: cfgmod.Config) -> None:
    """What ``scanner serve`` finds out about files and directories at start, looked at
    without creating anything: the same settings stop ``config check`` (exit 2)."""
    src, server = config.source, config.server
    if server.tmp_dir and not os.path.isdir(server.tmp_dir):
        raise ConfigError(f"{src}: 'server.tmp_dir' {server.tmp_dir}: not a directory; "
                          "create it for the user running scanner serve, or set it to \"\" "
                          "for the system default")
    for key, path in (("log_file", server.log_file), ("pid_file", server.pid_file)):
        parent = os.path.dirname(os.path.abspath(path)) if path else ""
        if path and not os.path.isdir(parent):
            raise ConfigError(f"{src}: 'server.{key}' {path}: the directory {parent} does "
                              "not exist; create it for the user running scanner serve")
    directory = config.quarantine.directory
    existing = _nearest_existing(directory)
    if not os.path.isdir(existing):
        raise ConfigError(f"{src}: 'quarantine.directory' {directory}: cannot create it: "
                          f"{existing} is not a directory")
    for where, table in cfgmod.policy_tables(config):
        archive = getattr(table, "archive_directory", None)
        if archive and not os.path.isdir(_nearest_existing(archive)):
            raise ConfigError(f"{src}: '{where}.archive_directory' {archive}: cannot "
                              f"create it: {_nearest_existing(archive)} is not a directory")
    if config.sql_log.enabled:
        from scanner.sqllog.db import driver_problem

        problem = driver_problem(config.sql_log.database)
        if problem:
            raise ConfigError(f"{src}: {problem}")
    groups = [("quarantine.socket_group", config.quarantine.socket_group,
               bool(config.quarantine.ampdp_socket))]
    groups += [(f"listeners[{i}].socket_group", lst.socket_group, bool(lst.path))
               for i, lst in enumerate(config.listeners)]
    for key, group, used in groups:
        if not used or not group or group.isdigit():
            continue
        try:
            grp.getgrnam(group)
        except KeyError:
            raise ConfigError(f"{src}: '{key}' {group!r}: no such group; give an existing "
                              "group name or number, or \"\"") from None


def policy_source_problems(config: cfgmod.Config, every_row: bool = True) -> list[str]:
    """Every bad row and key of the policy SQL table (serve logs them and leaves them
    out at message time; only with ``every_row``), or why the policy SQL table or LDAP
    directory cannot be read (serve would defer mail)."""
    from scanner.policy.sources import PolicyLookupError, make_sources

    problems = []
    for source in make_sources(config):
        try:
            if not every_row:
                source.probe()
                continue
            problems += source.audit()
        except PolicyLookupError as exc:
            problems.append(f"{exc}; scanner serve defers every message (451) until it "
                            "can be read")
    return problems


def sql_log_problems(config: cfgmod.Config) -> list[str]:
    """Why the SQL log's database cannot be written now (connection, tables, privileges:
    the tables are made when create_tables allows), as ``config check`` warns; mail
    flows all the same, its rows wait in the workers."""
    if not config.sql_log.enabled:
        return []
    from scanner.sqllog.db import Database, SqlLogError

    cfg = config.sql_log
    db = Database(cfg.database, cfg.timeout, cfg.create_tables,
                  need_quarantine=cfg.quarantine_text)
    try:
        db.open()
    except Exception as exc:
        why = str(exc) if isinstance(exc, SqlLogError) else \
            f"sql_log.database {db.where}: {str(exc).strip() or type(exc).__name__}"
        return [f"{why}; mail is scanned and delivered all the same, its rows wait in memory "
                "(sql_log.max_waiting)"]
    finally:
        db.close()
    return []


def _nearest_existing(path: str) -> str:
    """``path`` itself if it exists, else its nearest ancestor that does."""
    path = os.path.abspath(path)
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def _check(args: argparse.Namespace) -> int:
    config = _load(args.file)
    check_paths(config)
    checks, _ = preflight(config)
    for problem in probe_checks(checks) + policy_source_problems(config) \
            + sql_log_problems(config):
        print(f"scanner: warning: {problem}", file=sys.stderr)
    print(f"{config.source}: OK ({len(config.listeners)} listener(s), checks: "
          f"{', '.join(c.name for c in checks) or 'none'})")
    return 0


def _show(args: argparse.Namespace) -> int:
    config = _load(args.file)
    # The enabled checks' tables with their defaults filled in; the settings of a check
    # that is off stay as written (a check enabled later validates them then).
    tables, off = effective_check_settings(config)
    settings = {**{k: v for k, v in config.checks.settings.items() if k in off}, **tables}
    checks = dataclasses.replace(config.checks, settings=dict(sorted(settings.items())))
    text = cfgmod.render(dataclasses.replace(config, checks=checks))
    note = f"# installed checks this configuration leaves off: {', '.join(off) or 'none'}\n"
    print(text.replace("\n[checks]\n", f"\n{note}[checks]\n", 1), end="")
    return 0


def _keys(args: argparse.Namespace) -> int:
    print(cfgmod.reference(), end="")
    return 0


def _from_amavis(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scanner.errors import ConfigError
    from scanner.migrate.amavis import convert_to_toml, default_paths

    predefined = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.strip().lstrip("$").isidentifier():
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE, e.g. mydomain=example.com")
        predefined[name.strip().lstrip("$")] = value
    paths = [Path(p) for p in args.paths] or default_paths()
    text, conversion = convert_to_toml(paths, predefined)
    if args.output:
        try:
            with open(args.output, "x", encoding="utf-8") as out:
                out.write(text)
        except FileExistsError:
            raise ConfigError(f"{args.output}: exists already; choose another --output "
                              "or remove it") from None
        except OSError as exc:
            raise ConfigError(f"{args.output}: cannot write: {exc.strerror}") from None
    else:
        print(text, end="")
    converted = sum(len(v) for v in conversion.sections.values()) + bool(conversion.listeners)
    print(f"scanner: converted {converted} setting(s) from {len(conversion.files)} file(s); "
          f"{len(conversion.notes)} not converted, listed as comments at the end"
          + (f" of {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def _postfix(args: argparse.Namespace) -> int:
    from scanner.postfix_config import render_stanzas
    from scanner.postfix_milter import render_milter
    from scanner.postfix_proxy import render_proxy

    if args.part and (args.milter or args.proxy):
        print("scanner: --part selects from the content_filter settings; --milter and "
              "--proxy print their settings whole", file=sys.stderr)
        return 2
    if args.service and not args.proxy:
        print("scanner: --service goes with --proxy", file=sys.stderr)
        return 2
    config = _load(args.config)
    if args.milter:
        text = render_milter(config)
    elif args.proxy:
        text = render_proxy(config, args.service or "smtp/inet")
    else:
        text = render_stanzas(config, args.part)
    print(text, end="")
    return 0

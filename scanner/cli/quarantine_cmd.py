"""``scanner quarantine list|show|release|delete|expire|reindex|digest|import-amavis``:
manage held mail.

Works while ``scanner serve`` runs and from cron. Exit codes: 0 done; 1 the request
failed (unknown id, corrupt file, already released, bad address, next hop refused a
release or a digest); 2 configuration or usage error; 75 temporary failure (next hop
unreachable or 4xx, index busy): try again later; 141 (quietly) the reader of the
output went away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from scanner import config as cfgmod
from scanner.errors import ConfigError
from scanner.hostname import configured_hostname
from scanner.policy.decide import PRECEDENCE
from scanner.policy.lookup import listed
from scanner.quarantine.amavis_import import DEFAULT_DIRECTORY as AMAVIS_DIRECTORY
from scanner.quarantine.digest import DEFAULT_MAX_LISTED
from scanner.quarantine.record import QuarantineError, QuarantineRecord, mail_id_from
from scanner.quarantine.when import format_time, parse_duration, parse_since
from scanner.text import printable

EX_FAIL = 1
EX_TEMPFAIL = 75
EX_PIPE = 141  # what a shell reports for a command ended by SIGPIPE
STATES = ("held", "releasing", "released")  # QuarantineRecord.state
Command = Callable[[argparse.Namespace], int]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quarantine", help="list, show, release, delete, expire or reindex "
                       "held mail; mail recipients a digest of it")
    qsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", help="TOML file (default: as for serve)")

    lp = qsub.add_parser("list", parents=[common], help="list quarantined messages")
    lp.add_argument("--category", type=_category,
                    help="only this category (SPAM, VIRUS, BANNED, ...)")
    who = lp.add_mutually_exclusive_group()
    who.add_argument("--rcpt", help="only messages for this recipient address")
    who.add_argument("--held-for", metavar="ADDR",
                     help="only messages held for this recipient: not those a copy of "
                          "reached (a spam lover's, kept by quarantine_passed), as a "
                          "user's own quarantine page lists them")
    lp.add_argument("--sender", metavar="PATTERN", type=_sender_pattern,
                    help="only messages from this envelope sender: user@dom, user@, @dom, "
                         "@.dom (and its subdomains) or <> (bounces), as allow_senders")
    lp.add_argument("--subject", metavar="TEXT",
                    help="only messages whose Subject contains TEXT (any case)")
    lp.add_argument("--state", choices=STATES,
                    help="only messages in this state (released: an audit of releases)")
    lp.add_argument("--since", help="only newer: a duration (2d, 12h) or a date (2024-03-01)")
    shape = lp.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print a JSON array")
    shape.add_argument("--ids", action="store_true",
                       help="print the mail_ids alone, one a line (for xargs)")
    lp.set_defaults(func=_list)

    sp = qsub.add_parser("show", parents=[common], help="show one message's index entry")
    sp.add_argument("mail_id", type=mail_id_from, metavar="ID",
                    help="the mail_id, or its file as logged (7/spam-7vykgLjHGVrk.gz)")
    sp.add_argument("--raw", action="store_true", help="print the message itself")
    sp.add_argument("--json", action="store_true", help="print the entry as JSON")
    sp.set_defaults(func=_show)

    rp = qsub.add_parser("release", parents=[common],
                         help="deliver a message through the [reinject] next hop")
    rp.add_argument("mail_id", type=mail_id_from, metavar="ID",
                    help="the mail_id, or its file as logged (7/spam-7vykgLjHGVrk.gz)")
    rp.add_argument("--to", nargs="+", metavar="ADDR", help="deliver to these addresses "
                    "instead of the recipients it was held for")
    rp.add_argument("--by", help="who releases (in the release header; default: your "
                    "login name)")
    rp.add_argument("--force", action="store_true", help="release even if released before "
                    "or if an earlier release broke off")
    rp.add_argument("--learn-ham", action="store_true", help="once delivered, learn the "
                    "message as ham into the spam model the configuration uses (a false "
                    "positive; as scanner learn --ham)")
    rp.set_defaults(func=_release)

    dp = qsub.add_parser("delete", parents=[common], help="remove a message for good")
    dp.add_argument("mail_id", type=mail_id_from, metavar="ID",
                    help="the mail_id, or its file as logged (7/spam-7vykgLjHGVrk.gz)")
    dp.add_argument("--force", action="store_true",
                    help="delete even if an earlier release broke off")
    dp.add_argument("--learn-spam", action="store_true", help="first learn the message as "
                    "spam into the spam model the configuration uses (as scanner learn "
                    "--spam)")
    dp.set_defaults(func=_delete)

    ep = qsub.add_parser("expire", parents=[common], help="remove messages older than a "
                         "given age (for cron)")
    ep.add_argument("--older-than", required=True, metavar="AGE",
                    help="e.g. 30d, 12h, 2w")
    ep.add_argument("--category", type=_category,
                    help="only this category (a retention of its own: VIRUS 7d, SPAM 30d)")
    ep.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    ep.set_defaults(func=_expire)

    gp = qsub.add_parser("digest", parents=[common], help="mail each local recipient a "
                         "list of the messages held for them (for cron)")
    gp.add_argument("--since", default="1d", help="messages held since: a duration (1d, "
                    "12h) or a date (2024-03-01); default 1d, for a daily cron job")
    gp.add_argument("--category", type=_category, action="append", metavar="CATEGORY",
                    help="list this category (repeatable); default SPAM")
    gp.add_argument("--rcpt", action="append", metavar="PATTERN",
                    help="only to the recipients this matches (repeatable): user@dom, "
                         "user@, @dom, @.dom (and its subdomains); default every local one")
    gp.add_argument("--max-listed", type=int, default=DEFAULT_MAX_LISTED, metavar="N",
                    help="messages listed in one digest at most, the newest (the rest are "
                         f"counted); default {DEFAULT_MAX_LISTED}")
    gp.add_argument("--dry-run", "-n", action="store_true",
                    help="print the digests instead of sending them")
    gp.set_defaults(func=_digest)

    xp = qsub.add_parser("reindex", parents=[common], help="give quarantine files that have "
                         "no index row one again, from the envelope each file carries (after "
                         "a lost or corrupt index)")
    xp.add_argument("--dry-run", "-n", action="store_true",
                    help="only say what would be added")
    xp.set_defaults(func=_reindex)

    ip = qsub.add_parser("import-amavis", parents=[common], help="bring the mail amavis "
                         "holds in its quarantine files into this quarantine, under the "
                         "same mail_ids (after replacing amavis)")
    ip.add_argument("directory", nargs="?", default=AMAVIS_DIRECTORY,
                    help=f"amavis's $QUARANTINEDIR (default {AMAVIS_DIRECTORY})")
    ip.add_argument("--sql", metavar="URL", help="read amavis's SQL quarantine instead "
                    "(sql: quarantine method; the database $storage_sql_dsn names: "
                    "postgresql://... or mysql://USER:PASS@HOST/DB)")
    ip.add_argument("--dry-run", "-n", action="store_true",
                    help="only say what would be imported")
    ip.set_defaults(func=_import_amavis)


def _quarantine(args: argparse.Namespace):  # -> (Config, Quarantine)
    from scanner.quarantine.store import Quarantine

    config = cfgmod.load(cfgmod.resolve_path(args.config))
    directory = config.quarantine.directory
    if os.path.isdir(directory) and not os.access(directory, os.R_OK | os.X_OK):
        # without this a list looks empty and show/release fail half-way
        raise QuarantineError(
            f"{directory}: permission denied: run this as root or as the user scanner "
            "serve runs as (runuser -u scanner -- scanner quarantine ...)")
    return config, Quarantine(config.quarantine)


def _category(text: str) -> str:
    """``--category``: a category the quarantine holds, as amavis or the configuration
    writes it (BAD-HEADER or bad_header); a misspelt one would list nothing."""
    name = text.strip().upper().replace("_", "-")
    if name not in PRECEDENCE:  # CLEAN and SPAMMY too: quarantine_passed = ["clean"]
        raise argparse.ArgumentTypeError(f"{text!r} is not a quarantine category; use one "
                                         f"of {', '.join(PRECEDENCE)}")
    return name


def _fail(text: str, code: int = EX_FAIL) -> int:
    print(f"scanner quarantine: {text}", file=sys.stderr)
    return code


def _guarded(func: Command) -> Command:
    """Turn the errors users cause into a message and an exit code."""
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except QuarantineError as exc:
            busy = "database is locked" in str(exc)
            text = str(exc)
            if "readonly database" in text:  # SQLite's words for "not your index"
                text += ("; this user may not write the quarantine index: run this as root "
                         "or as the user scanner serve runs as (runuser -u scanner -- "
                         "scanner quarantine ...)")
            return _fail(text, EX_TEMPFAIL if busy else EX_FAIL)
        except ValueError as exc:
            return _fail(str(exc), 2)
        except BrokenPipeError:  # the reader went away (list | head): stop quietly
            _discard_stdout()
            return EX_PIPE
        except OSError as exc:  # a file of the quarantine this user may not read
            return _fail(f"{exc.filename or 'quarantine'}: {exc.strerror or exc}")
    return run


def _discard_stdout() -> None:
    """Point standard output at /dev/null, so the flush at exit does not fail again."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _short(rec: QuarantineRecord) -> str:
    score = f"{rec.score:.3f}" if rec.score is not None else "-"
    rcpts = printable(",".join(rec.recipients))
    return (f"{format_time(rec.stored_at)}  {rec.mail_id}  {rec.category:<10} {score:>8} "
            f"{rec.size:>9}  {rec.state:<9} <{printable(rec.sender)}> -> {rcpts}  "
            f"{rec.subject!r}")


def _sender_pattern(text: str) -> str:
    """An address pattern for ``list --sender`` (angle brackets around it dropped;
    ``<>`` or nothing: the null sender)."""
    bare = text.strip()
    if bare in ("", "<>"):
        return "<>"
    bare = bare.removeprefix("<").removesuffix(">")
    if "@" not in bare:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an address pattern: give user@dom, user@, @dom, @.dom "
            "(the domain and its subdomains) or <> (the null sender)")
    return bare


def _matching(records: Iterable[QuarantineRecord], args: argparse.Namespace,
              delimiter: str) -> Iterator[QuarantineRecord]:
    """``records`` that pass the filters the index cannot apply: the envelope sender
    matches the ``--sender`` pattern (the policy's address patterns: an extension after
    ``delimiter`` is matched without it too, a domain in either IDN spelling), the
    Subject contains ``--subject`` in any case, the state is ``--state``, the message
    was held for ``--held-for`` (the index's ``held_for``; rows that did not record it
    count as held for every recipient)."""
    wanted = args.subject.casefold() if args.subject else None
    for rec in records:
        if args.sender is not None and not listed([args.sender], rec.sender, delimiter):
            continue
        if wanted is not None and wanted not in rec.subject.casefold():
            continue
        if args.state and rec.state != args.state:
            continue
        if args.held_for and rec.got_it(args.held_for.strip("<>")):
            continue  # (not recorded: listed, as for every recipient)
        yield rec


@_guarded
def _list(args: argparse.Namespace) -> int:
    config, q = _quarantine(args)
    if _no_directory(config):
        return 0
    since = parse_since(args.since) if args.since else None
    records = _matching(q.records(category=args.category, rcpt=args.rcpt or args.held_for,
                                  since=since), args, config.policy.recipient_delimiter)
    if args.json:
        _print_json_array(r.as_dict() for r in records)
    elif args.ids:
        for rec in records:
            print(rec.mail_id)
    else:
        for rec in records:
            print(_short(rec))
    return 0


def _no_directory(config: cfgmod.Config) -> bool:
    """Say so when the quarantine directory does not exist: a mistyped path or
    ``--config`` would otherwise list (or send) nothing without a word."""
    directory = config.quarantine.directory
    if os.path.isdir(directory):
        return False
    print(f"scanner quarantine: {directory} does not exist (nothing quarantined yet, "
          f"or quarantine.directory of {config.source} is not the filter's)",
          file=sys.stderr)
    return True


def _print_json_array(items: Iterable[dict]) -> None:
    """``json.dumps(list(items), indent=1)``, written item by item (a quarantine may
    hold millions of messages)."""
    opened = False
    for item in items:
        sys.stdout.write(",\n" if opened else "[\n")
        sys.stdout.write(textwrap.indent(json.dumps(item, indent=1, ensure_ascii=False), " "))
        opened = True
    print("\n]" if opened else "[]")


@_guarded
def _show(args: argparse.Namespace) -> int:
    _, q = _quarantine(args)
    rec = q.get(args.mail_id)
    if args.raw:
        data = q.read_record(rec)
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    if args.json:
        print(json.dumps(rec.as_dict(), indent=1, ensure_ascii=False))
        return 0
    rows = [
        ("mail_id", rec.mail_id), ("secret_id", rec.secret_id),
        ("stored", format_time(rec.stored_at)), ("host", rec.host),
        ("category", rec.category),
        ("score", f"{rec.score:.3f}" if rec.score is not None else "-"),
        ("symbols", " ".join(rec.symbols) or "-"), ("sender", f"<{rec.sender}>"),
        ("recipients", ", ".join(rec.recipients)),
        ("held for", "not recorded" if rec.held_for is None else
         ", ".join(rec.held_for) or "nobody (every recipient got it)"),
        ("subject", rec.subject),
        ("message-id", rec.message_id or "-"), ("client", rec.client_addr or "-"),
        ("policy bank", rec.policy_bank or "-"), ("size", str(rec.size)),
        ("file", rec.path or f"{rec.relative_path} (not a file of this quarantine: "
                             "never read or removed)"), ("state", rec.state),
    ]
    if rec.state != "held" or rec.release_result:
        rows += [("release by", rec.released_by or "-"),
                 ("release started", format_time(rec.release_started)),
                 ("released", format_time(rec.released_at)),
                 ("released to", ", ".join(rec.released_to) or "-")]
        rows += [("reply", r) for r in rec.release_result]
    for key, value in rows:
        print(f"{key + ':':<17}{printable(value)}")
    return 0


def _login_name() -> str:
    name = os.environ.get("SUDO_USER")
    if not name:
        try:
            name = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            name = f"uid {os.getuid()}"
    return f"{name} via scanner quarantine release"


@_guarded
def _release(args: argparse.Namespace) -> int:
    from scanner.quarantine.release import release, released_marker
    from scanner.reinject.deliver import NextHop

    config, q = _quarantine(args)
    hop = NextHop.from_config(config.reinject, configured_hostname(config.server.hostname))
    replies = asyncio.run(release(q, hop, args.mail_id, recipients=args.to,
                                  requested_by=args.by or _login_name(), force=args.force,
                                  on_released=released_marker(config)))
    rec = q.get(args.mail_id)
    targets = args.to or rec.release_targets()
    for rcpt, reply in zip(targets, replies, strict=False):
        print(printable(f"<{rcpt.strip('<>')}>: {reply}"))
    codes = {r[:1] for r in replies}
    if "2" in codes and args.learn_ham and not _learn(args, q, rec, spam=False):
        return _fail(f"{args.mail_id} was released, but not learned as ham (see above)")
    if codes == {"2"}:
        return 0
    if "2" in codes:
        return _fail(f"{args.mail_id} released to some recipients only (see above)")
    if "4" in codes:
        return _fail(f"{args.mail_id} was not released: the next hop {hop.label} failed "
                     "temporarily (see above); try again later", EX_TEMPFAIL)
    return _fail(f"{args.mail_id} was not released: the next hop refused it (see above)")


@_guarded
def _delete(args: argparse.Namespace) -> int:
    _, q = _quarantine(args)
    if args.learn_spam and not _learn(args, q, q.get(args.mail_id), spam=True):
        return _fail(f"{args.mail_id} was not learned as spam (see above), so not deleted")
    rec = q.delete(args.mail_id, force=args.force)
    print(f"deleted {rec.mail_id} ({rec.relative_path})")
    return 0


def _learn(args: argparse.Namespace, q: Any, rec: QuarantineRecord, *, spam: bool) -> bool:
    """Learn a quarantined message (as received) into the configuration's spam model,
    as ``scanner learn`` does; print what happened; False (said why) on failure."""
    from scanner.cli.ml_commands import model_path
    from scanner.ml.errors import ModelError
    from scanner.ml.learn import learn_message

    label = "spam" if spam else "ham"
    try:
        path = model_path(argparse.Namespace(model=None, config=args.config))
        outcome = learn_message(path, q.read_stored(rec)[1], spam=spam)
    except (ModelError, ConfigError, QuarantineError) as exc:
        print(f"scanner quarantine: {rec.mail_id} not learned as {label}: {exc}",
              file=sys.stderr)
        return False
    print(f"{path}: {rec.mail_id} {outcome} as {label}")
    return True


@_guarded
def _reindex(args: argparse.Namespace) -> int:
    _, q = _quarantine(args)
    added, skipped = q.reindex(dry_run=args.dry_run)
    for rec in added:
        print(("would add  " if args.dry_run else "added  ") + _short(rec))
    for problem in skipped:
        print(f"scanner quarantine: left out {problem}", file=sys.stderr)
    print(f"{len(added)} row(s) {'would be ' if args.dry_run else ''}added, "
          f"{len(skipped)} file(s) left out", file=sys.stderr)
    return 0


@_guarded
def _import_amavis(args: argparse.Namespace) -> int:
    from scanner.quarantine.amavis_import import import_directory

    _, q = _quarantine(args)
    if args.sql:
        from scanner.quarantine.amavis_sql import import_sql

        result = import_sql(q, args.sql, dry_run=args.dry_run)
    else:
        result = import_directory(q, Path(args.directory), dry_run=args.dry_run)
    for rec in result.added:
        print(("would import  " if args.dry_run else "imported  ") + _short(rec))
    for note in result.ignored:
        print(f"scanner quarantine: ignored {note}", file=sys.stderr)
    for problem in result.failed:
        print(f"scanner quarantine: not imported: {problem}", file=sys.stderr)
    print(f"{len(result.added)} message(s) {'would be ' if args.dry_run else ''}imported, "
          f"{len(result.present)} already in the quarantine, {len(result.ignored)} ignored, "
          f"{len(result.failed)} not imported", file=sys.stderr)
    if result.failed:
        source = ("message(s) of amavis's SQL quarantine" if args.sql else
                  f"quarantine file(s) of {args.directory}")
        return _fail(f"{len(result.failed)} {source} could not be imported (see above)")
    return 0


@_guarded
def _expire(args: argparse.Namespace) -> int:
    _, q = _quarantine(args)
    age = parse_duration(args.older_than)
    count = q.expire(age, args.category)
    if not args.quiet:
        kind = f" {args.category}" if args.category else ""
        print(f"expired {count}{kind} message(s) older than {args.older_than}")
    return 0


@_guarded
def _digest(args: argparse.Namespace) -> int:
    from scanner.notices import load_templates
    from scanner.policy.sources import PolicyLookupError
    from scanner.quarantine import digest as dg
    from scanner.reinject.deliver import NextHop

    config, q = _quarantine(args)
    if args.max_listed < 1:
        raise ValueError(f"--max-listed {args.max_listed}: give 1 or more")
    if _no_directory(config):
        return 0
    since = parse_since(args.since)
    categories = args.category or ["SPAM"]
    records = [rec for category in dict.fromkeys(categories)
               for rec in q.records(category=category, since=since)]
    only = args.rcpt or ()
    try:
        rows = dg.source_rows(config, dg.candidates(records, only,
                                                    config.policy.recipient_delimiter))
    except PolicyLookupError as exc:
        return _fail(f"{exc}; no digest sent, try again later", EX_TEMPFAIL)
    digests = dg.collect(records, config.policy, only, rows)
    hostname = configured_hostname(config.server.hostname)
    templates = load_templates(config.notices.templates_dir)
    period = f"since {dg.when(since)}"
    built = [(d.recipient, *dg.render(d, hostname=hostname, period=period,
                                      release_url=config.quarantine.digest_release_url,
                                      max_listed=args.max_listed, templates=templates))
             for d in digests]
    if args.dry_run:
        for rcpt, data, _ in built:
            print(printable(f"--- digest to <{rcpt}> ---"))
            print(data.decode("utf-8", "replace").replace("\r\n", "\n"))
        print(f"{len(built)} digest(s) would be sent", file=sys.stderr)
        return 0
    hop = NextHop.from_config(config.reinject, hostname)
    replies = dg.send_all(hop, built)
    for (rcpt, _, _), digest, reply in zip(built, digests, replies, strict=True):
        print(printable(f"<{rcpt}>: {len(digest.records)} message(s): {reply}"))
    failed = [r for r in replies if not r.startswith("2")]
    if not failed:
        print(f"{len(built)} digest(s) sent", file=sys.stderr)
        return 0
    temporary = all(not r.startswith("5") for r in failed)
    return _fail(f"{len(failed)} of {len(built)} digest(s) not sent through the next hop "
                 f"{hop.label} (see above); run again to send them"
                 + ("" if temporary else " once the refusal is fixed"),
                 EX_TEMPFAIL if temporary else EX_FAIL)

"""``scanner scan FILE...``: run the pipeline on message files and show what it finds.

Parsing, unpacking, every enabled check and the policy run as in the daemon; nothing
is delivered, quarantined or bounced. Per message it prints the part tree, the symbols
with their scores and the verdict; ``--json`` prints one JSON object per line;
``--explain`` adds why the classifier scored the message as it did
(:mod:`scanner.ml.explain`).

What the daemon learns from the SMTP session comes from options: the envelope
(``--sender``, default sender@example.org; ``--rcpt``, default rcpt@example.test) and
the client Postfix names in XFORWARD (``--client-addr``, ``--client-name``,
``--client-helo``; default unknown, as for a message that came without XFORWARD). The
message is taken as the file holds it (Postfix would send CRLF line ends and add its
Received header).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from decoders.registry import quiet_libraries
from decoders.render import parts_json, tree_text
from scanner import config as cfgmod
from scanner.bounded import open_without_waiting, read_at_most, read_stdin_at_most
from scanner.checks.base import CheckContext
from scanner.mailid import new_mail_id
from scanner.ml.explain import Explanation, explain
from scanner.ml.model import Model
from scanner.pipeline.processor import Listener, Processor
from scanner.policy.sources import PolicyLookupError
from scanner.registry import build_checks, close_checks
from scanner.reinject.deliver import NextHop
from scanner.scores import ScoreTable, load_scores
from scanner.task import ClientInfo, Envelope, Recipient, Task

MAX_INPUT = 512 * 1024 * 1024


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="scan message files (or - for stdin) and show the result")
    p.add_argument("files", nargs="+", metavar="FILE", help="message file, or - for stdin")
    p.add_argument("--config", "-c", help="TOML file (default: as for serve)")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument("--sender", default="sender@example.org", help="envelope sender")
    p.add_argument("--rcpt", action="append", help="envelope recipient (repeatable)")
    p.add_argument("--client-addr", metavar="IP",
                   help="the SMTP client's address, as Postfix's XFORWARD ADDR gives it to "
                        "the daemon (default: unknown; it selects policy banks such as "
                        "MYNETS and the classifier reads it)")
    p.add_argument("--client-name", metavar="NAME",
                   help="the client's reverse DNS name (XFORWARD NAME; default: unknown)")
    p.add_argument("--client-helo", metavar="NAME",
                   help="the client's HELO name (XFORWARD HELO; default: unknown)")
    p.add_argument("--explain", action="store_true",
                   help="also show the classifier's decision split by feature block and "
                        "the tokens that pushed it most")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = cfgmod.load(cfgmod.resolve_path(args.config))
    quiet_libraries(logging.getLogger().getEffectiveLevel())
    return asyncio.run(_scan_all(args, config))


async def _scan_all(args: argparse.Namespace, config: cfgmod.Config) -> int:
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1)

    async def run_cpu(func: Any, *a: Any) -> Any:
        return await loop.run_in_executor(executor, partial(func, *a))

    checks = build_checks(config, CheckContext(config=config, run_cpu=run_cpu))
    scores = load_scores(config.checks.score_files)
    hop = NextHop.from_config(config.reinject, "localhost")
    processor = Processor(config, checks, scores, hop, "localhost", run_cpu=run_cpu)
    model = _model(checks) if args.explain else None
    if args.explain and model is None:
        print("scanner: --explain: the bayes check is off or has no model", file=sys.stderr)
    status = 0
    sender = envelope_sender(args.sender)
    for name in args.files:
        raw = read_input(name)
        if raw is None:
            status = 1
            continue
        task = Task(mail_id=new_mail_id(), raw=raw, log_id="scan", client=_client(args),
                    envelope=Envelope(sender, tuple(Recipient(r) for r in
                                                    (args.rcpt or ["rcpt@example.test"]))))
        try:
            unpacked = await processor.analyse(task, Listener(0, "ESMTP", ""),
                                               keep_parts=True)
        except PolicyLookupError as exc:  # the daemon would defer the message (451)
            print(f"scanner: {name}: {exc}; the filter would defer it (451)",
                  file=sys.stderr)
            status = 1
            continue
        try:
            why = explain(model, raw, args.client_name, args.client_addr,
                          sender or None) if model is not None else None
            print(_render(name, task, scores, args.json, why), flush=True)
        finally:
            if unpacked is not None:
                unpacked.close()
    close_checks(checks)
    executor.shutdown()
    return status


def envelope_sender(value: str) -> str:
    """A sender given on the command line as the daemon's Task holds it: the address
    without angle brackets, "" for the null sender (``<>``)."""
    value = value.strip()
    return value[1:-1].strip() if value.startswith("<") and value.endswith(">") else value


def _client(args: argparse.Namespace) -> ClientInfo:
    """What Postfix's XFORWARD would tell the daemon about the client, as far as given."""
    return ClientInfo(addr=args.client_addr, name=args.client_name, helo=args.client_helo)


def read_input(name: str) -> bytes | None:
    """A message file (``-``: standard input), at most MAX_INPUT bytes; None, with the
    reason on standard error, when it cannot be read."""
    try:
        if name == "-":
            return read_stdin_at_most(MAX_INPUT)
        with open_without_waiting(name) as fh:
            return read_at_most(fh, MAX_INPUT)
    except OSError as exc:
        print(f"scanner: cannot read {name}: {exc.strerror}", file=sys.stderr)
        return None


def _model(checks: list) -> Model | None:
    """The classifier's model, when the bayes check is on and has one."""
    return next((c.model for c in checks if c.name == "bayes"), None)


def _render(name: str, task: Task, scores: ScoreTable, as_json: bool,
            why: Explanation | None = None) -> str:
    verdict = next(iter(task.verdicts.values()))
    symbols: dict[str, float] = {}
    for h in verdict.hits:
        symbols[h.symbol] = round(symbols.get(h.symbol, 0.0)
                                  + scores.get(h.symbol).weight * h.factor, 3)
    if as_json:
        return json.dumps({
            "file": name, "category": verdict.category, "score": float(verdict.score),
            "destiny": verdict.destiny.value, "symbols": symbols,
            "hits": [{"symbol": h.symbol, "options": list(h.options), "part": h.part,
                      "source": h.source} for h in verdict.hits],
            "parts": parts_json(task.parts), "autolearn": task.autolearn,
        } | ({"explain": why.to_dict()} if why is not None else {}), ensure_ascii=False)
    lines = [f"== {name}", tree_text(task.parts).rstrip("\n") or "(no parts)", "symbols:"]
    for h in verdict.hits:
        opts = f" ({', '.join(h.options)})" if h.options else ""
        where = f" [{h.part}]" if h.part else ""
        lines.append(f"  {h.symbol}={scores.get(h.symbol).weight * h.factor:g}{opts}{where}")
    if not verdict.hits:
        lines.append("  (none)")
    lines.append(f"category: {verdict.category}  score: {verdict.score:g}  "
                 f"destiny: {verdict.destiny.value}")
    learnt = task.scratch.get("autolearn")
    if learnt is not None:
        lines.append(f"autolearn: {learnt.label}{f' ({learnt.reason})' if learnt.reason else ''}"
                     f", {learnt.points:g} points of the other checks (header "
                     f"{learnt.header:g}, body {learnt.body:g}), classifier "
                     f"{learnt.learner:g}")
    if why is not None:
        lines.append(why.text())
    return "\n".join(lines)

"""Prove a change neutral: every outcome of the analysis, old code against new.

Runs the pipeline as ``scanner scan --json`` runs it (parse, unpack, every check but
ClamAV, DNSBL and URIBL included, policy) on a fixed sample: every ``--every``-th
message of the SpamAssassin corpus tarball (ham, then spam) and every file under the
project's ``corpora/``. DNS is answered by a private NSD holding an empty root zone
(every name NXDOMAIN; needs root and nsd), and every name the checks ask for is
recorded, so a change in the names looked up (URIBL's link hosts, DNSBL's relay) shows
even though no list answers. Per message it compares the verdict (category, score,
destiny), every hit (symbol, factor, options, part, source), the header fields the
checks add or drop, the DKIM signatures found valid and the DNS names asked.

Each side runs in a child process with its tree first on ``PYTHONPATH``:

    scripts/outcome_differential.py --old /tmp/base-clone [--new .] [--every 10]

Exit status 0 when every message's outcome is identical, 1 otherwise (the first
differences are printed). Not part of the package; run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"


def sample(corpus: Path, every: int, extra: list[Path]) -> Iterator[tuple[str, bytes]]:
    """(name, raw) of every ``every``-th corpus message, then of every file in ``extra``."""
    from scanner.ml.mailbox_reader import iter_messages

    index = 0
    for kind in ("ham", "spam"):
        for name, raw in iter_messages(f"{corpus}#spamassassin-public/{kind}"):
            if index % every == 0:
                yield f"{kind}/{name}", raw
            index += 1
    for top in extra:
        for path in sorted(p for p in top.rglob("*")
                           if p.is_file() and not p.name.startswith("README")):
            yield str(path.relative_to(top.parent)), path.read_bytes()


def build(tmp: Path, resolver: str) -> Any:
    """A Processor with every check but ClamAV, DNS asked of ``resolver``."""
    from decoders.registry import load_decoders
    from scanner import config as cfgmod
    from scanner.checks.base import CheckContext
    from scanner.pipeline.processor import Processor
    from scanner.registry import build_checks
    from scanner.reinject.deliver import NextHop
    from scanner.scores import load_scores
    from scanner.testing.dns_server import dns_checks_toml

    text = ('[checks]\nenabled = ["*", "dnsbl", "uribl"]\ndisabled = ["clamav"]\n'
            f'[quarantine]\ndirectory = "{tmp / "q"}"\nampdp_socket = ""\n'
            + dns_checks_toml(resolver))
    (tmp / "scanner.toml").write_text(text)
    config = cfgmod.load(str(tmp / "scanner.toml"))

    async def run_cpu(func: Any, *args: Any) -> Any:
        return func(*args)

    checks = build_checks(config, CheckContext(config=config, run_cpu=run_cpu))
    return Processor(config, checks, load_scores(config.checks.score_files),
                     NextHop.from_config(config.reinject, "localhost"), "localhost",
                     run_cpu=run_cpu, decoders=load_decoders())


def record_queries(asked: list[str]) -> None:
    """Append every (name, type) the DNS client is asked for to ``asked``."""
    from scanner.dns.client import DnsClient

    original = DnsClient.query

    async def query(self: Any, name: str, rdtype: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(f"{name} {rdtype}")
        return await original(self, name, rdtype, *args, **kwargs)

    DnsClient.query = query  # type: ignore[method-assign]


def outcome(task: Any, asked: list[str]) -> dict[str, Any]:
    """Everything the analysis decided about one message, JSON-ready."""
    verdict = next(iter(task.verdicts.values()))
    return {
        "category": verdict.category, "score": repr(float(verdict.score)),
        "destiny": verdict.destiny.value,
        "hits": [[h.symbol, repr(h.factor), list(h.options), h.part or "", h.source]
                 for h in verdict.hits],
        "task_hits": sorted([h.symbol, repr(h.factor), list(h.options), h.part or "", h.source]
                            for h in task.hits),
        "add_headers": [list(f) for f in task.add_headers],
        "drop_fields": [list(r) for r in task.drop_fields],
        "dkim_valid": list(task.dkim_valid), "queue_id": task.queue_id,
        "dns": sorted(asked),
    }


async def emit(args: argparse.Namespace) -> int:
    """Child mode: one JSON line per sampled message, from the tree on PYTHONPATH."""
    from scanner.pipeline.processor import Listener
    from scanner.task import Envelope, Recipient, Task
    from scanner.testing.dns_server import nxdomain_server

    asked: list[str] = []
    record_queries(asked)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        server = nxdomain_server()
        server.start()
        stack.callback(server.stop)
        processor = build(Path(tmp), server.resolver)
        extra = [Path(p) for p in args.extra]
        for i, (name, raw) in enumerate(sample(Path(args.corpus), args.every, extra)):
            asked.clear()
            task = Task(mail_id=f"diff{i:06d}", raw=raw, log_id="diff",
                        envelope=Envelope("sender@example.org",
                                          (Recipient("rcpt@example.test"),)))
            await processor.analyse(task, Listener(0, "ESMTP", ""))
            print(json.dumps({"file": name} | outcome(task, asked), ensure_ascii=False),
                  flush=True)
    return 0


def run_side(tree: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The child's JSON lines for ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
    argv = [sys.executable, str(Path(__file__).resolve()), "--emit", "--every",
            str(args.every), "--corpus", str(args.corpus), *[f"--extra={p}" for p in args.extra]]
    proc = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{tree}: failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def compare(old: list[dict[str, Any]], new: list[dict[str, Any]], show: int) -> int:
    """Print the differences; the number of messages that differ."""
    differing = 0
    if len(old) != len(new):
        print(f"message counts differ: old {len(old)}, new {len(new)}")
        return max(1, abs(len(old) - len(new)))
    for a, b in zip(old, new, strict=True):
        if a == b:
            continue
        differing += 1
        if differing <= show:
            keys = [k for k in a if a.get(k) != b.get(k)]
            print(f"{a['file']}: differs in {', '.join(keys)}")
            for k in keys:
                print(f"  old {k}: {a[k]}\n  new {k}: {b[k]}")
    return differing


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", type=Path, help="tree of the old code (e.g. a clone of main)")
    p.add_argument("--new", type=Path, default=ROOT, help="tree of the new code")
    p.add_argument("--every", type=int, default=10, help="take every N-th corpus message")
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    p.add_argument("--extra", action="append", default=None,
                   help="directory of message files also scanned (default: corpora/)")
    p.add_argument("--show", type=int, default=10, help="differing messages to print")
    p.add_argument("--emit", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.extra is None:
        args.extra = [str(ROOT / "corpora")]
    if args.emit:
        return asyncio.run(emit(args))
    if args.old is None:
        p.error("--old is required")
    old, new = run_side(args.old, args), run_side(args.new, args)
    differing = compare(old, new, args.show)
    print(f"{len(new)} messages, {differing} with a different outcome "
          f"(old {args.old}, new {args.new})")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())

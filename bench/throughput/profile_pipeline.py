"""Where the filter's CPU time goes: the analysis pipeline on corpus messages, in-process.

Runs ``Processor.analyse`` (parse, unpack, every enabled check, policy) on N messages of
the SpamAssassin corpus with the CPU stages called inline, so one profiler sees all of
it, and prints the process CPU per message and the median and mean milliseconds per
message per check (wall clock), plus (with
``--profile``) the functions with the most own time. Nothing is delivered. Messages are
picked as bench/throughput/run.py picks them (same seed, same sample, CRLF line ends).

    .venv/bin/python bench/throughput/profile_pipeline.py -n 1000 [--profile]
    .venv/bin/python bench/throughput/profile_pipeline.py --disable-checks bayes,rules
    .venv/bin/python bench/throughput/profile_pipeline.py --disable-checks '' --local-dns
    .venv/bin/python bench/throughput/profile_pipeline.py --digest --hits hits.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from decoders.registry import load_decoders  # noqa: E402
from scanner import config as cfgmod  # noqa: E402
from scanner.checks.base import CheckContext  # noqa: E402
from scanner.mailid import new_mail_id  # noqa: E402
from scanner.pipeline.processor import Listener, Processor  # noqa: E402
from scanner.registry import build_checks  # noqa: E402
from scanner.reinject.deliver import NextHop  # noqa: E402
from scanner.scores import load_scores  # noqa: E402
from scanner.task import Envelope, Recipient, Task  # noqa: E402
from scanner.testing.dns_server import dns_checks_toml, nxdomain_server  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import DEFAULT_CORPUS, load_corpus  # noqa: E402

DNS_CHECKS = "auth,dnsbl,uribl,clamav"


def build(disabled: list[str], tmp: Path, resolver: str = "") -> tuple[Processor, list[Any]]:
    text = (f'[checks]\nenabled = ["*", "dnsbl", "uribl"]\ndisabled = {json.dumps(disabled)}\n'
            f'[quarantine]\ndirectory = "{tmp / "q"}"\nampdp_socket = ""\n')
    if resolver:
        text += dns_checks_toml(resolver)
    path = tmp / "scanner.toml"
    path.write_text(text)
    config = cfgmod.load(str(path))

    async def run_cpu(func: Any, *args: Any) -> Any:
        return func(*args)

    checks = build_checks(config, CheckContext(config=config, run_cpu=run_cpu))
    processor = Processor(config, checks, load_scores(config.checks.score_files),
                          NextHop.from_config(config.reinject, "localhost"), "localhost",
                          run_cpu=run_cpu, decoders=load_decoders())
    return processor, checks


async def analyse_all(processor: Processor, checks: list[Any], messages: list[bytes],
                      digest: Any = None, hits_out: Any = None) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"total": []}
    for check in checks:  # time each check by wrapping its run method
        timings[check.name] = []
        original = check.run

        async def timed(task: Task, *a: Any, _orig: Any = original, _name: str = check.name,
                        ) -> Any:
            start = time.perf_counter()
            try:
                return await _orig(task, *a)
            finally:
                timings[_name].append((time.perf_counter() - start) * 1000)

        check.run = timed
    listener = Listener(0, "ESMTP", "")
    for raw in messages:
        task = Task(mail_id=new_mail_id(), raw=raw, log_id="bench",
                    envelope=Envelope("sender@example.org", (Recipient("u@example.test"),)))
        start = time.perf_counter()
        unpacked = await processor.analyse(task, listener)
        timings["total"].append((time.perf_counter() - start) * 1000)
        if digest is not None or hits_out is not None:
            # every hit of every message, to prove a change neutral
            hits = sorted((h.symbol, round(h.factor, 6), h.options, h.part or "", h.source)
                          for h in task.hits)
            if digest is not None:
                digest.update(repr(hits).encode())
            if hits_out is not None:
                hits_out.write(json.dumps({"message": len(timings["total"]) - 1,
                                           "hits": [list(h) for h in hits]}) + "\n")
        if unpacked is not None:
            unpacked.close()
    return timings


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--messages", type=int, default=1000)
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--disable-checks", default=DNS_CHECKS,
                   help=f"checks to disable (default {DNS_CHECKS})")
    p.add_argument("--profile", action="store_true", help="print the top functions")
    p.add_argument("--callers", default="", metavar="REGEX",
                   help="with --profile: also list matching functions by cumulative time")
    p.add_argument("--digest", action="store_true",
                   help="print a SHA-256 over every message's hits (same digest = same "
                        "results, for checking that an optimisation changed nothing)")
    p.add_argument("--hits", type=Path, metavar="FILE",
                   help="write each message's hits as a JSON line (diff two runs to see "
                        "which messages a change touched)")
    p.add_argument("--dump", default="", metavar="FILE",
                   help="with --profile: also write the raw profile (pstats format)")
    p.add_argument("--local-dns", action="store_true",
                   help="answer the DNS checks from a private NSD with an empty root zone "
                        "(every name NXDOMAIN; needs root and nsd), as run.py --local-dns")
    args = p.parse_args()
    messages = load_corpus(args.corpus, args.messages, args.seed)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        resolver = ""
        if args.local_dns:
            server = nxdomain_server()
            server.start()
            stack.callback(server.stop)
            resolver = server.resolver
        processor, checks = build([n for n in args.disable_checks.split(",") if n],
                                  Path(tmp), resolver)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        digest = hashlib.sha256() if args.digest else None
        cpu = time.process_time()
        hits_out = stack.enter_context(args.hits.open("w")) if args.hits else None
        timings = asyncio.run(analyse_all(processor, checks, messages, digest, hits_out))
        cpu = time.process_time() - cpu
        if profiler:
            profiler.disable()
    print(f"{len(messages)} messages; ms per message (median / mean):")
    for name, values in timings.items():
        if values:
            print(f"  {name:<16} {statistics.median(values):7.2f} / "
                  f"{statistics.fmean(values):7.2f}")
    # the times above are wall clock (a check's DNS waits included); this is the CPU the
    # whole analysis took, the figure to compare two versions of the code by
    print(f"process CPU {cpu / len(messages) * 1000:.2f} ms per message")
    if digest is not None:
        print(f"hits digest: {digest.hexdigest()}")
    if profiler:
        stats = pstats.Stats(profiler)
        if args.dump:
            stats.dump_stats(args.dump)
        stats.sort_stats("tottime").print_stats(40)
        if args.callers:
            stats.sort_stats("cumulative").print_stats(args.callers)
    return 0


if __name__ == "__main__":
    sys.exit(main())

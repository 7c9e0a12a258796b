"""Memory soak: does a long-running filter's memory level off, or keep growing?

Starts ``scanner serve`` with every check (the DNS checks answered by a private NSD that
says NXDOMAIN to every name, ClamAV on a private clamd with the tests' small signature
database unless ``--no-clamav``), Postfix's ``smtp-sink`` as the next hop, and pushes N
corpus messages straight into the filter over SMTP (no Postfix in front: only the
filter's own memory is of interest). Every message is made unique by a serial header,
so the per-process caches (DNS answers, ClamAV results, parsed Received fields) fill to
their bounds instead of answering from one entry.

After every ``--step`` messages it prints the PSS and RSS of the master and of each
worker. A leak shows as worker memory that keeps rising after the caches are full;
memory that rises during the first thousands of messages and then stays flat is the
caches and the allocator's arenas settling.

    .venv/bin/python bench/throughput/soak_memory.py -n 30000 --step 3000

Needs root (the private NSD), the ``postfix`` package (smtp-sink), ``nsd`` and
``clamav-daemon``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DEFAULT_CORPUS, load_corpus  # noqa: E402
from filter_process import ScannerProcess, descendants, pss_kib, rss_kib  # noqa: E402
from run import Sender  # noqa: E402

from scanner.testing.clamd import ClamdInstance  # noqa: E402
from scanner.testing.dns_server import nxdomain_server  # noqa: E402
from scanner.testing.postfix import free_port, make_base_dir, wait_for_port  # noqa: E402


def sample(scanner: ScannerProcess) -> dict[str, object]:
    """PSS and RSS (KiB) of the master and of each worker (sorted by pid)."""
    assert scanner.proc is not None
    master = scanner.proc.pid
    workers = sorted(descendants(master))
    return {
        "master": {"pss": pss_kib(master), "rss": rss_kib(master)},
        "workers": [{"pid": p, "pss": pss_kib(p), "rss": rss_kib(p)} for p in workers],
    }


def unique(messages: list[bytes]) -> list[bytes]:
    """The messages with a serial header in front, so that no two are alike."""
    return [b"X-Soak-Serial: %d\r\n" % i + m for i, m in enumerate(messages)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--messages", type=int, default=30000)
    p.add_argument("--step", type=int, default=3000, help="messages between samples")
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-clamav", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    # what ScannerProcess reads
    args.filter_maxproc = args.connections
    args.checks = "*,dnsbl,uribl"
    args.disable_checks = ""
    args.extra_toml = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    messages = unique(load_corpus(args.corpus, args.messages, args.seed))
    base = make_base_dir(prefix="scanner-soak-")
    samples: list[dict[str, object]] = []
    with contextlib.ExitStack() as stack:
        dns = nxdomain_server()
        dns.start()
        stack.callback(dns.stop)
        args.local_dns_resolver = dns.resolver
        endpoint = None
        if not args.no_clamav:
            clamd = ClamdInstance(base / "clamd", max_threads=4)
            clamd.start()
            stack.callback(clamd.stop)
            endpoint = clamd.unix_endpoint
        sink_port, filter_port = free_port(), free_port()
        sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}",
                                 "100"], stdout=subprocess.DEVNULL)
        stack.callback(sink.kill)
        wait_for_port(sink_port, 10)
        scanner = ScannerProcess(base, filter_port, sink_port, args, endpoint)
        scanner.start()
        stack.callback(scanner.stop)
        started = time.monotonic()
        for first in range(0, len(messages), args.step):
            Sender(filter_port, messages[first:first + args.step], args.connections).run()
            point = {"messages": min(first + args.step, len(messages)),
                     "seconds": round(time.monotonic() - started, 1), **sample(scanner)}
            samples.append(point)
            if not args.json:
                print(_line(point), flush=True)
        logged = _logged(scanner, len(messages))
    if not args.json:
        print(f"{logged} summary log lines for {len(messages)} messages")
    if args.json:
        print(json.dumps({"messages": len(messages), "logged": logged,
                          "clamav": not args.no_clamav, "samples": samples}, indent=1))
    return 0


def _logged(scanner: ScannerProcess, expected: int, timeout: float = 10.0) -> int:
    """Summary log lines written (each follows its 250 reply closely: wait a little)."""
    deadline = time.monotonic() + timeout
    while (count := len(scanner.filter_times(0))) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


def _line(point: dict[str, object]) -> str:
    master = point["master"]
    workers = point["workers"]
    assert isinstance(master, dict) and isinstance(workers, list)
    per_worker = "  ".join(f"w{i}: pss {w['pss'] // 1024} MiB rss {w['rss'] // 1024} MiB"
                           for i, w in enumerate(workers))
    return (f"{point['messages']:>7} msgs {point['seconds']:>7} s  master pss "
            f"{master['pss'] // 1024} MiB  {per_worker}")


if __name__ == "__main__":
    raise SystemExit(main())

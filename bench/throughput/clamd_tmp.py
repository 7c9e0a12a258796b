"""What clamd's temporary directory costs: tmpfs against disk, clamd's own CPU per message.

clamd writes every INSTREAM stream to a file in its ``TemporaryDirectory`` and every
part it extracts from MIME or an archive to another; Debian's clamd uses ``/tmp``,
which is on disk in Debian 12. This starts a fresh private clamd (the tests' small
database) per round, alternating a directory under ``--tmpfs`` (default /dev/shm) and
one on disk (``--disk``, default /var/tmp), sends the same N corpus messages over
INSTREAM with our own client (as the ``clamav`` check sends the whole message), and
prints clamd's CPU time (user + system, all its threads, from /proc) per message and
the wall time per message. Each round starts a new clamd because clamd remembers the
digests of clean files it has scanned.

    .venv/bin/python bench/throughput/clamd_tmp.py -n 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import DEFAULT_CORPUS, load_corpus  # noqa: E402
from filter_process import cpu_seconds  # noqa: E402

from scanner.checks.clamd_client import ClamdClient  # noqa: E402
from scanner.testing.clamd import ClamdInstance  # noqa: E402


async def scan_all(endpoint: str, messages: list[bytes]) -> None:
    client = ClamdClient([endpoint], timeout=60.0)
    for raw in messages:
        reply = await client.instream(raw)
        if reply.status.name not in ("CLEAN", "INFECTED"):
            raise SystemExit(f"clamd answered {reply}")


def one_round(tmp_root: str, messages: list[bytes]) -> tuple[float, float]:
    """(clamd CPU ms per message, wall ms per message) with temporary files in tmp_root."""
    with tempfile.TemporaryDirectory() as base:
        clamd = ClamdInstance(Path(base) / "clamd", max_threads=4, tmp_root=Path(tmp_root))
        clamd.start()
        try:
            assert clamd.pid is not None
            before, started = sum(cpu_seconds(clamd.pid)), time.perf_counter()
            asyncio.run(scan_all(clamd.unix_endpoint, messages))
            wall = time.perf_counter() - started
            cpu = sum(cpu_seconds(clamd.pid)) - before
        finally:
            clamd.close()
    n = len(messages)
    return 1000 * cpu / n, 1000 * wall / n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--messages", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--tmpfs", default="/dev/shm", help="a directory on tmpfs")
    p.add_argument("--disk", default="/var/tmp", help="a directory on disk")
    args = p.parse_args()
    for where in (args.tmpfs, args.disk):
        os.makedirs(where, exist_ok=True)
    messages = load_corpus(args.corpus, args.messages, args.seed)
    figures: dict[str, list[tuple[float, float]]] = {args.tmpfs: [], args.disk: []}
    for number in range(args.rounds):
        for where, results in figures.items():
            results.append(one_round(where, messages))
            cpu, wall = results[-1]
            print(f"round {number + 1}: {where}: clamd CPU {cpu:.3f} ms/message, "
                  f"wall {wall:.3f} ms/message", flush=True)
    print(f"{len(messages)} messages, {args.rounds} rounds, medians:")
    for where, results in figures.items():
        print(f"  {where}: clamd CPU {statistics.median(c for c, _ in results):.3f} ms, "
              f"wall {statistics.median(w for _, w in results):.3f} ms per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())

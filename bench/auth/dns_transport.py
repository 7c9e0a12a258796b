"""CPU per DNS query of the two UDP transports: a socket per query, and one kept socket
per loopback resolver (scanner/dns/shared_udp.py).

A private NSD with an empty root zone (every name NXDOMAIN at once) listens on a
loopback port; N queries for distinct names go out in batches of ``--batch`` at once
(9: what the DNS checks ask per corpus message). Each round measures the process's
CPU time (user + system) for the transport alone (``udp_exchange`` against
``SharedUdp.exchange``) and for the whole client (``DnsClient.query``, answer cache
off, ``share_loopback`` False and True); rounds alternate and medians are printed.

    .venv/bin/python bench/auth/dns_transport.py [-n 6000] [--batch 9] [--rounds 3] [--json]

Needs root (NSD) and Debian's ``nsd``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scanner.dns import Deadline, DnsClient, Status  # noqa: E402
from scanner.dns.shared_udp import SharedUdp  # noqa: E402
from scanner.dns.stub import build_query, udp_exchange  # noqa: E402
from scanner.testing.dns_server import nxdomain_server  # noqa: E402

Ask = Callable[[str], Awaitable[bool]]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def timed(ask: Ask, names: list[str], batch: int) -> float:
    """Microseconds of CPU per query; every query must be answered."""
    await ask("warm-up.example")
    start = cpu()
    for i in range(0, len(names), batch):
        answered = await asyncio.gather(*(ask(name) for name in names[i:i + batch]))
        if not all(answered):
            raise SystemExit("a query went unanswered: the figures would mean nothing")
    return (cpu() - start) / len(names) * 1e6


async def transport(server: tuple[str, int], names: list[str], batch: int,
                    shared: bool) -> float:
    kept = SharedUdp(server, asyncio.get_running_loop()) if shared else None

    async def ask(name: str) -> bool:
        query = build_query(name, 16)
        assert query is not None
        reply = (await kept.exchange(query, 2.0) if kept is not None
                 else await udp_exchange(query, server, 2.0))
        return reply is not None

    try:
        return await timed(ask, names, batch)
    finally:
        if kept is not None:
            kept.close()


async def client(server: tuple[str, int], names: list[str], batch: int,
                 shared: bool) -> float:
    dns_client = DnsClient([server], 3.0, cache_size=0, share_loopback=shared)

    async def ask(name: str) -> bool:
        answer = await dns_client.query(name, "TXT", Deadline(5))
        return answer.status is Status.NXDOMAIN

    return await timed(ask, names, batch)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=6000, help="queries per measurement")
    p.add_argument("--batch", type=int, default=9, help="queries sent at once")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    results: dict[str, list[float]] = {}
    with nxdomain_server() as server:
        host, port = server.resolver.rsplit(":", 1)
        address = (host, int(port))
        for rnd in range(args.rounds):
            # distinct names per round: no resolver-side effect of repeats
            names = [f"q{i}.r{rnd}.x{i % 97}.example.org" for i in range(args.n)]
            for label, func, shared in (("transport, socket per query", transport, False),
                                        ("transport, kept socket", transport, True),
                                        ("client, socket per query", client, False),
                                        ("client, kept socket", client, True)):
                figure = asyncio.run(func(address, names, args.batch, shared))
                results.setdefault(label, []).append(figure)
    medians = {label: statistics.median(values) for label, values in results.items()}
    if args.json:
        print(json.dumps({"rounds": results, "median_us": medians}, indent=2))
        return
    print(f"{args.n} queries per round, {args.batch} at once, {args.rounds} rounds; "
          "CPU microseconds per query:")
    for label, values in results.items():
        rounds = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {label:30s} median {medians[label]:6.1f}  ({rounds})")


if __name__ == "__main__":
    main()

"""Scans while clamd reloads its database: the longest wait and the failures.

A fresh private clamd (the tests' small database) gets scans from ``--workers``
concurrent loops of our client for ``--seconds``, and one ``RELOAD`` after a second
(``--reloads N``: one every 0.3 s instead). Prints how many scans were made, the
longest one and the failures, with clamd's ``ConcurrentDatabaseReload`` and
``IdleTimeout`` as given:

    .venv/bin/python bench/throughput/clamd_reload.py --concurrent no --idle-timeout 30
    .venv/bin/python bench/throughput/clamd_reload.py --concurrent yes --reloads 20
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from pathlib import Path

from scanner.checks.clamd_client import ClamdClient, ClamdError
from scanner.testing.clamd import ClamdInstance


def command(path: Path, text: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(120)
        sock.connect(str(path))
        sock.sendall(text)
        return sock.recv(100)


async def run(clamd: ClamdInstance, args: argparse.Namespace) -> None:
    client = ClamdClient([clamd.unix_endpoint], timeout=120, reuse=not args.alone)
    waits: list[float] = []
    failures: list[str] = []
    stop = time.monotonic() + args.seconds

    async def scans(i: int) -> None:
        while time.monotonic() < stop:
            began = time.monotonic()
            try:
                await client.instream(b"x" * (1000 + i))
            except ClamdError as exc:
                failures.append(str(exc))
            waits.append(time.monotonic() - began)
            await asyncio.sleep(0.05)

    async def reloads() -> None:
        await asyncio.sleep(1.0)
        for _ in range(args.reloads):
            await asyncio.to_thread(command, clamd.socket_path, b"zRELOAD\0")
            await asyncio.sleep(0.3)

    await asyncio.gather(*(scans(i) for i in range(args.workers)), reloads())
    client.close()
    print(f"ConcurrentDatabaseReload {args.concurrent}, IdleTimeout {args.idle_timeout}, "
          f"{args.reloads} RELOAD(s), {'one connection per scan' if args.alone else 'sessions'}:"
          f" {len(waits)} scans, longest {max(waits):.2f} s, {len(failures)} failed"
          + (f" ({failures[0]})" if failures else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", choices=("yes", "no"), default="yes")
    parser.add_argument("--idle-timeout", type=int, default=30)
    parser.add_argument("--reloads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--alone", action="store_true", help="no kept sessions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as base:
        clamd = ClamdInstance(Path(base) / "clamd", extra={
            "ConcurrentDatabaseReload": args.concurrent,
            "IdleTimeout": str(args.idle_timeout)})
        clamd.start()
        try:
            asyncio.run(run(clamd, args))
        finally:
            clamd.close()


if __name__ == "__main__":
    main()

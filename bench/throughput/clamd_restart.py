"""Scans while clamd is restarted: how many messages fail, how long it all takes.

A fresh private clamd (the tests' small database) is stopped and started again 0.5 s
after ``-n`` small messages start going through the ClamAV check, ``--concurrency`` at
a time. Prints the outcomes (clean, CLAMAV_FAIL, ...) and the seconds taken as JSON; run it
with ``--retry-delays`` empty to see the check without retries:

    .venv/bin/python bench/throughput/clamd_restart.py -n 3000
    .venv/bin/python bench/throughput/clamd_restart.py -n 3000 --retry-delays
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import scanner.config
from scanner.checks.base import CheckContext
from scanner.checks.clamav import ClamAV, ClamAVSettings
from scanner.task import Envelope, Recipient, Task
from scanner.testing.clamd import ClamdInstance


async def _run_here(func: Any, *args: Any) -> Any:
    return func(*args)


async def scan_all(check: ClamAV, n: int, concurrency: int) -> collections.Counter:
    """Scan ``n`` messages, ``concurrency`` at a time; count the outcomes."""
    envelope = Envelope(sender="a@b.example", recipients=(Recipient("c@d.example"),))
    counts: collections.Counter = collections.Counter()
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with limit:
            task = Task(mail_id=str(i), envelope=envelope,
                        raw=b"Subject: x\n\nbody %d\n" % i)
            hits = await check.run(task)
            counts[" ".join(h.symbol for h in hits) or "clean"] += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000, help="messages")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--retry-delays", type=float, nargs="*", default=[1.0, 6.0])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as base, ClamdInstance(Path(base)) as clamd:
        settings = ClamAVSettings(endpoints=(clamd.unix_endpoint,), cache_size=0,
                                  retry_delays=tuple(args.retry_delays))
        check = ClamAV(settings, CheckContext(config=scanner.config.load(None),
                                              run_cpu=_run_here))
        restart = threading.Thread(target=lambda: (time.sleep(0.5), clamd.restart()))
        began = time.monotonic()
        restart.start()
        counts = asyncio.run(scan_all(check, args.n, args.concurrency))
        restart.join()
        print(json.dumps({"outcomes": dict(counts),
                          "seconds": round(time.monotonic() - began, 1)}))


if __name__ == "__main__":
    main()

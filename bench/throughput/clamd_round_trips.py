"""What one message with N attachments costs in clamd requests, connections and time.

The ``clamav`` check sends the whole message once, then every decoded part clamd would
not find by itself in it (attachments, archive members; not inline text), each as its
own INSTREAM request: N attachments are N + 1 requests, and clamd reads every
attachment twice (inside the whole message, which it unpacks itself, and alone).
amavis sends one ``CONTSCAN`` of its parts directory per message instead (one round
trip; clamd reads each decoded part once, the whole message only when
``@keep_decoded_original_maps`` asks for it). This builds messages with N distinct
binary attachments of a given size, runs them through the real decoders and the check
(no result cache) against a fresh private clamd, and prints per message: requests,
connections opened, bytes sent to clamd against the message's size, clamd's CPU time
and the check's wall time (means over ``--messages`` messages for
the counts, a median for the rest).

    .venv/bin/python bench/throughput/clamd_round_trips.py --sizes 4096 131072
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from filter_process import cpu_seconds  # noqa: E402

import scanner.config  # noqa: E402
from scanner.checks.base import CheckContext  # noqa: E402
from scanner.checks.clamav import ClamAV, ClamAVSettings  # noqa: E402
from scanner.testing.clamd import ClamdInstance  # noqa: E402
from scanner.testing.tasks import task_from_bytes  # noqa: E402


def message(attachments: int, size: int) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@b.example", "c@d.example", "files"
    msg.set_content("Here are the files.\n")
    for i in range(attachments):
        msg.add_attachment(os.urandom(size), maintype="application",
                           subtype="octet-stream", filename=f"file{i}.bin")
    return msg.as_bytes()


async def _run_here(func, *args):  # type: ignore[no-untyped-def]
    return func(*args)


def measure(clamd: ClamdInstance, attachments: int, size: int, count: int,
            scan_parts: bool = True) -> dict[str, float]:
    settings = ClamAVSettings(endpoints=(clamd.unix_endpoint,), cache_size=0,
                              scan_parts=scan_parts)
    check = ClamAV(settings, CheckContext(config=scanner.config.load(None),
                                          run_cpu=_run_here))
    sent: list[int] = []
    walls: list[float] = []
    cpus: list[float] = []
    raw_sizes: list[int] = []
    assert clamd.pid is not None

    async def one(raw: bytes) -> None:
        with task_from_bytes(raw) as task:
            pieces = await check._pieces(task)
            before, began = sum(cpu_seconds(clamd.pid)), time.perf_counter()
            await check.run(task)
            walls.append(time.perf_counter() - began)
            cpus.append(sum(cpu_seconds(clamd.pid)) - before)
            sent.append(sum(p.size for p in pieces if not p.covered))
            raw_sizes.append(len(raw))

    async def every() -> None:
        for _ in range(count):
            await one(message(attachments, size))
        check.close()

    asyncio.run(every())
    return {"requests": check.client.requests / count,
            "connections": check.client.connections / count,
            "sent/size": statistics.median(s / r for s, r in zip(sent, raw_sizes, strict=True)),
            "clamd_cpu_ms": sum(cpus) / count * 1000,  # /proc counts 10 ms ticks: a mean
            "wall_ms": statistics.median(walls) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[0, 1, 2, 5, 10, 20])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 131072],
                        help="bytes per attachment (before base64)")
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--whole-only", action="store_true",
                        help="scan_parts = false: the whole message alone, for comparison")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as base:
        clamd = ClamdInstance(Path(base) / "clamd", tmp_root=Path("/dev/shm"))
        clamd.start()
        try:
            print("attachments  size    requests  connections  sent/size  clamd CPU ms"
                  "  wall ms")
            for size in args.sizes:
                for n in args.counts:
                    r = measure(clamd, n, size, args.messages, not args.whole_only)
                    print(f"{n:11d}  {size:6d}  {r['requests']:8.2f}  {r['connections']:11.2f}"
                          f"  {r['sent/size']:9.2f}  {r['clamd_cpu_ms']:12.2f}"
                          f"  {r['wall_ms']:7.2f}")
        finally:
            clamd.close()


if __name__ == "__main__":
    main()

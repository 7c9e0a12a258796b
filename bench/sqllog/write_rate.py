"""How fast one worker's SQL log thread writes amavis's rows, and what it costs the worker.

For each database (a throw-away PostgreSQL and MariaDB server, as the tests start them,
or ``--url``), ``-n`` messages (two recipients, 30 senders and 200 recipients drawn at
random, so most addresses are found and some inserted) are queued at once on a
:class:`scanner.sqllog.writer.SqlLog`; the round's time is until the last one is written.
Prints rows (messages) per second and the process CPU time per message (what the
thread takes from the worker's event loop, which shares the interpreter), medians of
``--rounds``. The servers run with fsync off (as the tests' do), so this is the
client's and server's CPU, not a disk's commit rate.

    .venv/bin/python bench/sqllog/write_rate.py -n 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scanner.sqllog.config import SqlLogConfig  # noqa: E402
from scanner.sqllog.rows import MessageRow, RecipientRow, address  # noqa: E402
from scanner.sqllog.writer import SqlLog  # noqa: E402


def rows(n: int, seed: int) -> list[MessageRow]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        rcpts = tuple(RecipientRow(address(f"user{rnd.randrange(200)}@example.test"), True,
                                   "C", "P", False, False, 1.2, "250 2.0.0 Ok, id=1-01")
                      for _ in range(2))
        out.append(MessageRow(
            partition_tag=0, mail_id=f"{seed:03d}{i:09d}", secret_id="", am_id="1-01",
            time_num=1765000000 + i, sender=address(f"s{rnd.randrange(30)}@example.org"),
            policy="", client_addr="192.0.2.7", size=4000, originating=False, content="C",
            quar_type=" ", quar_loc="", dsn_sent="N", spam_level=1.2,
            message_id=f"<{seed}.{i}@example.org>", from_addr="Sender <s@example.org>",
            subject=f"message {i}", host="mx.example.test", recipients=rcpts))
    return out


def one_round(url: str, n: int, seed: int) -> tuple[float, float]:
    """(messages per second, CPU ms per message) for ``n`` queued messages."""
    log = SqlLog(SqlLogConfig(database=url, timeout=10.0, max_waiting=n + 1))
    batch = rows(n, seed)
    log.submit(batch[0])  # connected, tables made: not timed
    while log.waiting:
        time.sleep(0.01)
    start, cpu = time.perf_counter(), time.process_time()
    for row in batch[1:]:
        log.submit(row)
    while log.waiting:
        time.sleep(0.002)
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    log.close()
    return (n - 1) / wall, used / (n - 1) * 1000


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "postgresql":
        from tests.pgserver import private_postgresql

        with private_postgresql() as server:
            yield server.url
    else:
        from tests.mariadb import private_mariadb

        with private_mariadb() as url:
            yield url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=2000, help="messages per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--url", action="append", default=[],
                    help="an existing database (its amavis tables are written to); "
                         "default: private PostgreSQL and MariaDB servers")
    args = ap.parse_args()
    targets = [(u.split(":", 1)[0], contextlib.nullcontext(u)) for u in args.url] or [
        (k, database(k)) for k in ("postgresql", "mariadb")]
    for name, context in targets:
        with context as url:
            results = [one_round(url, args.n, seed) for seed in range(args.rounds)]
        rates, cpus = zip(*results, strict=True)
        print(f"{name}: {statistics.median(rates):.0f} messages/s written "
              f"(rounds: {', '.join(f'{r:.0f}' for r in rates)}); "
              f"{statistics.median(cpus):.2f} ms CPU per message in the process")


if __name__ == "__main__":
    main()

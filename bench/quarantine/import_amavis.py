"""How fast ``scanner quarantine import-amavis`` brings an amavis quarantine over.

Writes N quarantine files as amavis writes them (Debian's layout: one level of
subdirectories, gzip-compressed spam) into a temporary directory, imports them into a
fresh quarantine (SQLite index, on the same disk) and prints the messages per second,
median of ``--rounds`` runs. Every stored file is fsynced and every index row committed,
as the filter stores held mail, so the disk's fsync speed dominates.

    .venv/bin/python bench/quarantine/import_amavis.py -n 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import base64
import gzip
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scanner.quarantine.amavis_import import import_directory  # noqa: E402
from scanner.quarantine.config import QuarantineConfig  # noqa: E402
from scanner.quarantine.store import Quarantine  # noqa: E402


def amavis_file(mail_id: str, size: int) -> bytes:
    """One spam quarantine file in amavis 2.13's form, with a body of ``size`` bytes."""
    body = (b"Cheap offers for you today, click below.\n" * (size // 42 + 1))[:size]
    return (f"Return-Path: <s@spam.example>\nDelivered-To: spam-quarantine\n"
            f"X-Envelope-From: <s@spam.example>\nX-Envelope-To: <a@example.test>,\n"
            f" <b@example.test>\nX-Envelope-To-Blocked: <b@example.test>\n"
            f"X-Quarantine-ID: <{mail_id}>\nX-Spam-Flag: YES\nX-Spam-Score: 9.1\n"
            f"X-Spam-Status: Yes, score=9.1 tag=2 tag2=6.31 kill=6.31\n"
            f" tests=[BAYES_99=3.5] autolearn=no\n"
            f"Received: from mx.example.test ([127.0.0.1])\n by localhost\n"
            f"From: s@spam.example\nTo: b@example.test\nSubject: offer {mail_id}\n"
            f"Message-ID: <{mail_id}@spam.example>\n\n").encode() + body


def one_round(n: int, size: int, base: Path) -> float:
    """Seconds to import ``n`` files written under ``base``."""
    source = base / "virusmails"
    for _ in range(n):
        mail_id = base64.b64encode(os.urandom(9), altchars=b"-_").decode()
        directory = source / mail_id[0]
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"spam-{mail_id}.gz").write_bytes(gzip.compress(amavis_file(mail_id,
                                                                                 size)))
    q = Quarantine(QuarantineConfig(directory=str(base / "q")))
    start = time.perf_counter()
    result = import_directory(q, source)
    elapsed = time.perf_counter() - start
    assert len(result.added) == n and not result.failed, result.failed[:3]
    return elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--messages", type=int, default=2000)
    p.add_argument("--size", type=int, default=4000, help="body bytes per message")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default=None, help="where to write (default: the system's "
                   "temporary directory; put it on the quarantine's disk for a real figure)")
    args = p.parse_args()
    rates = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            seconds = one_round(args.messages, args.size, Path(tmp))
        rates.append(args.messages / seconds)
        print(f"round: {args.messages} messages in {seconds:.2f} s "
              f"({rates[-1]:.0f} messages/s)")
    print(f"median {statistics.median(rates):.0f} messages/s over {args.rounds} rounds "
          f"({args.messages} messages of {args.size} body bytes each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

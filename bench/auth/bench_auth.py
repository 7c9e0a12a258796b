"""Added latency per message of the DNS-based checks (auth, dnsbl, uribl) with a local
DNS server, p50/p95; plus the cost of DKIM signing.

Usage: .venv/bin/python bench/auth/bench_auth.py [--messages N] [--json]

A private NSD (Debian's ``nsd``) serves the test zones of ``tests/auth/zones.py`` on a
loopback port; the checks' resolver is pointed straight at it, so a DNS round trip is a
loopback UDP exchange (what a local caching resolver answers from its cache). For each
message the three checks run concurrently, as in the pipeline, and the wall time from
start to the last result is the latency the message gains. Two runs: ``cold`` (our
answer cache off: every lookup goes to the server) and ``warm`` (cache on, the same
domains again: what a busy server mostly sees). Messages rotate through: signed mail
that passes everything, a spoofed sender (SPF fail, DMARC reject), a listed client, and
mail with five URL domains. Everything runs in one process on one event loop, one
message at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scanner.auth.dkim_sign import SigningKey, load_key, sign  # noqa: E402
from scanner.checks.auth import Auth  # noqa: E402
from scanner.checks.base import CheckContext  # noqa: E402
from scanner.checks.dnsbl import Dnsbl  # noqa: E402
from scanner.checks.uribl import Uribl  # noqa: E402
from scanner.config import loads  # noqa: E402
from scanner.config.schema import build  # noqa: E402
from scanner.task import ClientInfo  # noqa: E402
from scanner.testing.dns_server import DnsServer, find_nsd  # noqa: E402
from scanner.testing.tasks import task_from_bytes  # noqa: E402
from tests.auth.zones import all_zones, make_keys  # noqa: E402


async def inline(func: Any, *args: Any) -> Any:
    return func(*args)


def make(cls: type, table: dict[str, Any]) -> Any:
    config = loads("")
    settings = build(cls.Settings, table, f"checks.settings.{cls.name}", config.source)
    return cls(settings, CheckContext(config=config, run_cpu=inline))


def messages(key_file: Path) -> list[tuple[bytes, str, ClientInfo]]:
    def mail(author: str, body: str) -> bytes:
        return (f"From: <{author}>\r\nTo: bob@ours.test\r\nSubject: bench\r\n"
                f"Message-ID: <b@x.test>\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: text/plain\r\n\r\n{body}\r\n").encode()

    key = SigningKey("good.test", "s2", load_key(str(key_file)))
    good = mail("alice@good.test", "Quarterly numbers attached.")
    name, value = sign(good, key)
    good = f"{name}: {value}\r\n".encode() + good
    urls = mail("x@nodmarc.test", "See http://www.evil-domain.test/ http://grey.test/a "
                "https://login.phish.test/ http://cdn.clean.test/ www.quota.test")
    return [
        (good, "alice@good.test",
         ClientInfo("192.0.2.1", "mail.good.test", None, "mail.good.test")),
        (mail("ceo@good.test", "Wire the money."), "ceo@good.test",
         ClientInfo("192.0.2.99", None, None, "spoofer.spf.test")),
        (mail("x@quar.test", "Cheap stuff."), "x@quar.test",
         ClientInfo("192.0.2.66", None, None, "dyn-66.spf.test")),
        (urls, "x@nodmarc.test", ClientInfo("192.0.2.1", None, None, "mail.good.test")),
    ]


async def one(checks: list, raw: bytes, sender: str, client: ClientInfo) -> float:
    with task_from_bytes(raw, sender=sender, client=client) as task:
        began = time.perf_counter()
        await asyncio.gather(*(c.run(task) for c in checks))
        return (time.perf_counter() - began) * 1000


async def series(server: DnsServer, cache: int, mails: list, count: int) -> list[float]:
    dns = {"resolvers": [server.resolver], "timeout": 2.0, "budget": 8.0,
           "cache_size": cache}
    checks = [
        make(Auth, {"dns": dns, "authserv_id": "bench.test"}),
        make(Dnsbl, {"dns": dns, "lists": [
            {"zone": "bl.test", "codes": {"127.0.0.2": "RCVD_IN_SBL"}},
            {"zone": "ubl.test", "symbol": "RCVD_IN_X"}]}),
        make(Uribl, {"dns": dns, "lists": [
            {"zone": "ubl.test", "symbol": "URIBL_DBL_SPAM"},
            {"zone": "mbl.test", "bitmask": {"2": "URIBL_BLACK"}}]}),
    ]
    for raw, sender, client in mails:  # warm-up: imports, PSL, first sockets
        await one(checks, raw, sender, client)
    out = []
    for i in range(count):
        raw, sender, client = mails[i % len(mails)]
        out.append(await one(checks, raw, sender, client))
    return out


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(values), "p50_ms": round(pick(0.50), 2), "p95_ms": round(pick(0.95), 2),
            "mean_ms": round(statistics.fmean(values), 2), "max_ms": round(max(values), 2)}


def signing_cost(key_file: Path, count: int) -> dict[str, float]:
    key = SigningKey("good.test", "s2", load_key(str(key_file)))
    raw = (b"From: a@good.test\r\nTo: b@x.test\r\nSubject: s\r\n\r\n" + b"line of text\r\n" * 400)
    times = []
    for _ in range(count):
        began = time.perf_counter()
        sign(raw, key)
        times.append((time.perf_counter() - began) * 1000)
    return summary(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if find_nsd() is None:
        print("nsd is not installed (apt-get install -y nsd)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        files, keys = make_keys(Path(tmp))
        server = DnsServer(all_zones(keys))
        server.start()
        try:
            mails = messages(files["k2"])
            result = {
                "cold": summary(asyncio.run(series(server, 0, mails, args.messages))),
                "warm": summary(asyncio.run(series(server, 20000, mails, args.messages))),
                "dkim_sign_2048": signing_cost(files["k2"], 100),
                "dkim_sign_ed25519": signing_cost(files["ed"], 100),
            }
        finally:
            server.stop()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, row in result.items():
            print(f"{name:18} n={row['n']:<5} p50={row['p50_ms']:7.2f} ms  "
                  f"p95={row['p95_ms']:7.2f} ms  mean={row['mean_ms']:7.2f} ms  "
                  f"max={row['max_ms']:7.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time rule evaluation per message: the shipped set, and Debian's SpamAssassin 4.0 rules.

Messages: ``--count`` (default 500) from ``../shared/corpora`` (seeded sample of ham and
spam, the same selection as bench/sa-compat). Each message is timed from raw bytes to
hits (views built, prefilter scans, regex confirmation, metas), as the ``rules`` check
does it, excluding MIME decoding done earlier in the pipeline; the BAD-HEADER check is
timed with the shipped set. Rule sets are compiled once (Hyperscan databases cached in
``bench/sa-compat/out/hs-cache``) and the load time is printed too.

    .venv/bin/python bench/rules/run.py [--count 500] [--seed 1] [--no-hyperscan]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scanner.rules import badheader  # noqa: E402
from scanner.rules.engine import evaluate  # noqa: E402
from scanner.rules.loader import load_rules  # noqa: E402
from scanner.rules.uris import text_uri_regex  # noqa: E402
from scanner.rules.views import MessageView  # noqa: E402

SA_RULES = Path("/usr/share/spamassassin")
CACHE = ROOT / "bench" / "sa-compat" / "out" / "hs-cache"


def _select(count: int, seed: int) -> list[tuple[str, bytes]]:
    spec = importlib.util.spec_from_file_location("sa_compat", ROOT / "bench" / "sa-compat"
                                                  / "run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.select(count, seed)


def bench(label: str, dirs: list[Path], shipped: bool, messages: list[bytes],
          hyperscan: bool) -> None:
    started = time.monotonic()
    rs = load_rules(dirs, shipped=shipped, use_hyperscan=hyperscan, cache_dir=CACHE)
    load_s = time.monotonic() - started
    finder = text_uri_regex(rs.tlds)
    times: list[float] = []
    timeouts = 0
    for raw in messages:
        t0 = time.perf_counter()
        view = MessageView(raw, uri_finder=finder, redirectors=rs.redirectors)
        result = evaluate(rs, view, 5.0)
        if shipped and not dirs:
            badheader.check(raw)
        times.append(time.perf_counter() - t0)
        timeouts += result.timed_out is not None
    times.sort()
    print(f"{label}: {len(rs.scores())} reported rules ({len(rs.by_name)} loaded); "
          f"load {load_s:.1f} s; per message median {statistics.median(times) * 1000:.2f} ms, "
          f"p90 {times[int(len(times) * 0.9)] * 1000:.2f} ms, max {times[-1] * 1000:.1f} ms; "
          f"timeouts {timeouts}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-hyperscan", action="store_true")
    args = ap.parse_args()
    messages = [raw for _, raw in _select(args.count, args.seed)]
    hs = not args.no_hyperscan
    bench("shipped", [], True, messages, hs)
    if SA_RULES.is_dir():
        bench("debian spamassassin 4.0", [SA_RULES], False, messages, hs)
    else:
        print(f"{SA_RULES} missing: apt-get install -y spamassassin")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

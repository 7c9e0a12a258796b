"""Compare our rule engine with SpamAssassin 4.0 on the same messages and the same rules.

1. Pick ``--count`` messages (default 500) from ``../shared/corpora`` with ``--seed``
   (ham and spam mixed; messages with a body line starting "From " are left out so
   the mbox handed to SpamAssassin carries them byte for byte).
2. Run ``spamassassin -t -L --mbox`` once over all of them and read each message's
   "Content analysis details" table (cached in ``out/sa-hits.json`` by message
   digest; ``--refresh`` reruns SpamAssassin).
3. Load ``/usr/share/spamassassin`` into our engine (shipped rules off), evaluate
   every message, and compare per (message, rule) for every rule we loaded that
   SpamAssassin would show (score not 0, not a ``__`` sub-rule).

Writes ``out/report.json`` and prints a Markdown summary (load counts, agreement,
biggest disagreements with an example message each).

    .venv/bin/python bench/sa-compat/run.py [--count 500] [--seed 1] [--refresh]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scanner.ml.mailbox_reader import iter_messages  # noqa: E402
from scanner.rules.engine import evaluate  # noqa: E402
from scanner.rules.loader import load_rules  # noqa: E402
from scanner.rules.uris import text_uri_regex  # noqa: E402
from scanner.rules.views import MessageView  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"
SA_RULES = Path("/usr/share/spamassassin")
OUT = Path(__file__).resolve().parent / "out"
SEPARATOR = b"From sa-compat-%d@bench.invalid Thu Jan  1 00:00:00 2024\n"
_SECTION = re.compile(rb"^From sa-compat-(\d+)@bench\.invalid .*\n", re.M)
_ROW = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Za-z0-9_]+)(?:\s|$)")


def select(count: int, seed: int) -> list[tuple[str, bytes]]:
    """(name, message) pairs: a seeded sample of ham and spam, mbox line dropped."""
    found = [("/".join(name.rsplit("/", 2)[-2:]), raw) for kind in ("ham", "spam")
             for name, raw in iter_messages(f"{CORPUS}#spamassassin-public/{kind}")]
    found.sort()
    random.Random(seed).shuffle(found)
    chosen: list[tuple[str, bytes]] = []
    for name, raw in found:
        if raw.startswith(b"From "):
            raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
        raw = raw.replace(b"\r\n", b"\n")
        if b"\nFrom " in raw or not raw.strip():
            continue
        chosen.append((name, raw.rstrip(b"\n") + b"\n"))
        if len(chosen) >= count:
            break
    return chosen


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def run_spamassassin(messages: list[tuple[str, bytes]], refresh: bool) -> dict[str, list[str]]:
    """Rule names SpamAssassin reports per message digest (cached)."""
    cache_file = OUT / "sa-hits.json"
    cache: dict[str, list[str]] = {}
    if cache_file.exists() and not refresh:
        cache = json.loads(cache_file.read_text())
    todo = [(n, r) for n, r in messages if digest(r) not in cache]
    if todo:
        # SpamAssassin reorders mbox messages (by date): the separator carries the index
        mbox = b"".join(SEPARATOR % i + raw + b"\n" for i, (_, raw) in enumerate(todo))
        started = time.monotonic()
        proc = subprocess.run(["spamassassin", "-t", "-L", "--mbox"], input=mbox,
                              capture_output=True, timeout=7200, check=False)
        print(f"spamassassin: {len(todo)} messages in {time.monotonic() - started:.0f} s",
              file=sys.stderr)
        marks = list(_SECTION.finditer(proc.stdout))
        if len(marks) != len(todo):
            raise SystemExit(f"spamassassin returned {len(marks)} messages for {len(todo)}: "
                             + proc.stderr.decode(errors="replace")[-500:])
        for n, mark in enumerate(marks):
            end = marks[n + 1].start() if n + 1 < len(marks) else len(proc.stdout)
            raw = todo[int(mark.group(1))][1]
            cache[digest(raw)] = parse_report(proc.stdout[mark.end():end].decode("latin-1"))
        OUT.mkdir(exist_ok=True)
        cache_file.write_text(json.dumps(cache, indent=0, sort_keys=True))
    return {digest(r): cache[digest(r)] for _, r in messages}


def parse_report(text: str) -> list[str]:
    """Rule names of the first "Content analysis details" table of a message."""
    start = text.find("Content analysis details:")
    if start < 0:
        return []
    lines = text[start:].splitlines()[3:]
    names: list[str] = []
    for line in lines:
        if not line.strip():
            break
        m = _ROW.match(line)
        if m:
            names.append(m.group(2))
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--refresh", action="store_true", help="rerun SpamAssassin")
    ap.add_argument("--top", type=int, default=25, help="disagreements to list")
    args = ap.parse_args()
    if not CORPUS.exists():
        raise SystemExit(f"{CORPUS}: corpus missing")
    if not SA_RULES.is_dir():
        raise SystemExit(f"{SA_RULES}: missing; apt-get install -y spamassassin")
    messages = select(args.count, args.seed)
    sa = run_spamassassin(messages, args.refresh)
    started = time.monotonic()
    rs = load_rules([SA_RULES], shipped=False, cache_dir=OUT / "hs-cache")
    load_s = time.monotonic() - started
    finder = text_uri_regex(rs.tlds)
    compared = sorted(r.name for r in rs.by_name.values() if r.reported)
    compared_set = set(compared)
    fp: Counter = Counter()
    fn: Counter = Counter()
    both: Counter = Counter()
    examples: dict[str, str] = {}
    agree = 0
    timings: list[float] = []
    for name, raw in messages:
        view = MessageView(raw, uri_finder=finder, redirectors=rs.redirectors,
                           valid_host=None)
        t0 = time.perf_counter()
        result = evaluate(rs, view, 10.0)
        timings.append(time.perf_counter() - t0)
        ours = {h.name for h in result.hits} & compared_set
        theirs = set(sa[digest(raw)]) & compared_set
        for rule in ours - theirs:
            fp[rule] += 1
            examples.setdefault(rule, name)
        for rule in theirs - ours:
            fn[rule] += 1
            examples.setdefault(rule, name)
        for rule in ours & theirs:
            both[rule] += 1
        agree += len(compared) - len(ours ^ theirs)
    pairs = len(compared) * len(messages)
    active = sum(both.values()) + sum(fp.values()) + sum(fn.values())
    summary = rs.stats.summary()
    timings.sort()
    report = {
        "messages": len(messages),
        "rules_compared": len(compared),
        "load": summary,
        "load_seconds": round(load_s, 1),
        "pairs": pairs,
        "agreeing_pairs": agree,
        "agreement_pct": round(100.0 * agree / pairs, 3) if pairs else 100.0,
        "hit_pairs": active,
        "hit_pairs_agreeing": sum(both.values()),
        "hit_agreement_pct": round(100.0 * sum(both.values()) / active, 2) if active else 100.0,
        "median_ms": round(1000 * timings[len(timings) // 2], 2),
        "disagreements": sorted(
            ({"rule": r, "only_ours": fp[r], "only_sa": fn[r], "both": both[r],
              "example": examples.get(r, "")} for r in set(fp) | set(fn)),
            key=lambda d: -(d["only_ours"] + d["only_sa"])),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(report, indent=1))
    print_markdown(report, args.top)
    return 0


def print_markdown(report: dict, top: int) -> None:
    load = report["load"]
    print(f"messages: {report['messages']}, rules compared: {report['rules_compared']}")
    print(f"loaded: {load['loaded']} of {load['defined_non_eval']} non-eval rules "
          f"({load['loaded_pct']}%), by type {load['by_type']}; eval rules skipped: "
          f"{load['eval_rules_skipped']}; untranslatable: {load['untranslatable']}; "
          f"load {report['load_seconds']} s")
    print(f"agreement: {report['agreement_pct']}% of {report['pairs']} (message, rule) pairs; "
          f"on pairs where either hit: {report['hit_agreement_pct']}% of {report['hit_pairs']}")
    print(f"median evaluation: {report['median_ms']} ms/message\n")
    print("| rule | only ours | only SA | both | example |")
    print("|---|---|---|---|---|")
    for d in report["disagreements"][:top]:
        print(f"| {d['rule']} | {d['only_ours']} | {d['only_sa']} | {d['both']} | {d['example']} |")


if __name__ == "__main__":
    raise SystemExit(main())

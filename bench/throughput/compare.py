"""Compare the filter's CPU per message of two commits, in alternating pairs.

Each side runs from a checkout of its own: a temporary git worktree at ``--base`` (and at
``--head``, or this checkout as it is when no ``--head`` is given). That is the only
honest way: ``python -m scanner`` puts its working directory before ``PYTHONPATH`` on
``sys.path``, so pointing ``PYTHONPATH`` at another clone measures this checkout's code
twice (bench/throughput/README.md, the correction of session 29). The pairs alternate
which side runs first, so that a machine getting slower or faster over the run does not
favour one side.

Two ways of measuring, both with every check but ClamAV and the DNS checks answered by
a private NSD (``--local-dns``):

* ``--mode postfix`` (default): ``run.py -n N --configs c --rounds 1``, the filter
  behind a real Postfix; the filter's CPU per message and (c)'s messages per second.
* ``--mode in-process``: ``profile_pipeline.py -n N --digest``, the analysis alone;
  its CPU per message, and whether both sides give the same hits digest.

``--mode spine`` runs (c) as ``--mode postfix`` does but with the spine alone (no
decoding, no checks: bench/throughput/spine.toml), the SMTP in, the reinjection and the
log line that every message costs whatever is checked.

    .venv/bin/python bench/throughput/compare.py --base 56f8e45 [--head HEAD] [--pairs 3]
        [--mode postfix|in-process|spine] [-n 3000]

Needs root, postfix and nsd (as run.py and profile_pipeline.py do).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DEFAULT_CORPUS  # noqa: E402

GIT = ("git", "-c", "safe.directory=*", "-C", str(ROOT))
"""git on this repository, also when it belongs to another user than the one running."""
_CPU = re.compile(r"^process CPU ([0-9.]+) ms per message$", re.M)
_DIGEST = re.compile(r"^hits digest: ([0-9a-f]+)$", re.M)


def worktree(rev: str, where: Path) -> Path:
    """A detached worktree of this repository at ``rev``."""
    path = where / rev.replace("/", "_")
    subprocess.run([*GIT, "worktree", "add", "-q", "--detach", str(path), rev], check=True,
                   capture_output=True)
    return path


def measure(checkout: Path, args: argparse.Namespace) -> dict[str, object]:
    """One measurement of the code in ``checkout``."""
    corpus = str(args.corpus.resolve())
    if args.mode in ("postfix", "spine"):
        checks = (["--disable-checks", "auth,dnsbl,uribl,banned,rules,bayes",
                   "--extra-toml", str(ROOT / "bench/throughput/spine.toml")]
                  if args.mode == "spine" else ["--disable-checks", "", "--local-dns"])
        out = _run(checkout, "bench/throughput/run.py", "-n", str(args.messages), "--configs",
                   "c", "--rounds", "1", *checks, "--corpus", corpus, "--json")
        result = json.loads(out)["results"]["c"]
        if result["error"]:
            raise SystemExit(f"{checkout}: (c) failed: {result['error']}")
        cpu = result["filter"]["cpu_seconds"] / result["messages"] * 1000
        return {"cpu_ms": round(cpu, 3), "rate": result["rate"]}
    out = _run(checkout, "bench/throughput/profile_pipeline.py", "-n", str(args.messages),
               "--disable-checks", "clamav", "--local-dns", "--digest", "--corpus", corpus)
    cpu_match, digest = _CPU.search(out), _DIGEST.search(out)
    if cpu_match is None or digest is None:
        raise SystemExit(f"{checkout}: unexpected profile_pipeline output:\n{out}")
    return {"cpu_ms": float(cpu_match.group(1)), "digest": digest.group(1)}


def _run(checkout: Path, script: str, *argv: str) -> str:
    out = subprocess.run([sys.executable, str(checkout / script), *argv], cwd=checkout,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{checkout}: {script} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the commit to compare against")
    p.add_argument("--head", help="the other commit (default: this checkout as it is)")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--mode", choices=("postfix", "in-process", "spine"), default="postfix")
    p.add_argument("-n", "--messages", type=int, default=3000)
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        sides = {"base": worktree(args.base, Path(tmp))}
        sides["head"] = worktree(args.head, Path(tmp)) if args.head else ROOT
        try:
            runs: dict[str, list[dict[str, object]]] = {"base": [], "head": []}
            for pair in range(args.pairs):
                order = ("base", "head") if pair % 2 == 0 else ("head", "base")
                for side in order:
                    runs[side].append(measure(sides[side], args))
        finally:
            for path in sides.values():
                if path != ROOT:
                    subprocess.run([*GIT, "worktree", "remove", "--force", str(path)],
                                   check=False, capture_output=True)
    report(args, runs)
    return 0


def report(args: argparse.Namespace, runs: dict[str, list[dict[str, object]]]) -> None:
    differences = [float(h["cpu_ms"]) - float(b["cpu_ms"])  # type: ignore[arg-type]
                   for b, h in zip(runs["base"], runs["head"], strict=True)]
    data = {"mode": args.mode, "messages": args.messages, "base": args.base,
            "head": args.head or f"{ROOT} as it is", "runs": runs,
            "cpu_ms_difference_per_pair": [round(d, 3) for d in differences],
            "median_difference_ms": round(statistics.median(differences), 3)}
    if args.mode == "in-process":
        data["same_hits"] = len({r["digest"] for r in runs["base"] + runs["head"]}) == 1
    if args.json:
        print(json.dumps(data, indent=2))
        return
    print(f"{args.mode}, {args.messages} messages, {args.pairs} alternating pairs")
    for side in ("base", "head"):
        cpu = ", ".join(f"{r['cpu_ms']:.2f}" for r in runs[side])
        rates = ", ".join(f"{r['rate']:.1f}" for r in runs[side] if "rate" in r)
        print(f"  {side} {data[side]}: CPU ms per message {cpu}"
              + (f"; msg/s {rates}" if rates else ""))
    print(f"  head - base per pair: {', '.join(f'{d:+.2f}' for d in differences)} ms; "
          f"median {data['median_difference_ms']:+.2f} ms")
    if "same_hits" in data:
        print(f"  same hits digest on both sides: {data['same_hits']}")


if __name__ == "__main__":
    sys.exit(main())

"""What SQL logging costs the filter's throughput: bench/throughput/run.py's
configuration (c) (every check that needs no resolver; the loop through a private
Postfix) with and without ``[sql_log]`` to a throw-away PostgreSQL server, alternating
(off, on, off, on, ...), ``--pairs`` times; prints each run's messages per second and
the median ratio on/off.

    .venv/bin/python bench/sqllog/filter_cost.py -n 3000 --pairs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.pgserver import private_postgresql  # noqa: E402


def one_run(n: int, extra: Path | None) -> float:
    """Messages per second of configuration (c) in one run of run.py."""
    cmd = [sys.executable, str(ROOT / "bench/throughput/run.py"), "-n", str(n),
           "--configs", "c", "--json"]
    if extra is not None:
        cmd += ["--extra-toml", str(extra)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return float(json.loads(done.stdout)["results"]["c"]["rate"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3000, help="messages per run")
    ap.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args()
    with private_postgresql() as server, tempfile.TemporaryDirectory() as tmp:
        extra = Path(tmp) / "sql_log.toml"
        extra.write_text(f'[sql_log]\ndatabase = "{server.url}"\n')
        off, on = [], []
        for pair in range(args.pairs):
            off.append(one_run(args.n, None))
            on.append(one_run(args.n, extra))
            print(f"pair {pair + 1}: off {off[-1]:.1f}/s, on {on[-1]:.1f}/s", flush=True)
        import psycopg

        with psycopg.connect(server.url) as con:
            rows = con.execute("SELECT count(*) FROM msgs").fetchone()[0]
    ratios = [b / a for a, b in zip(off, on, strict=True)]
    print(f"median off {statistics.median(off):.1f}/s, on {statistics.median(on):.1f}/s; "
          f"ratio on/off per pair {', '.join(f'{r:.3f}' for r in ratios)}, median "
          f"{statistics.median(ratios):.3f}; {rows} msgs rows written")


if __name__ == "__main__":
    main()

"""What ``run.py`` reports: one configuration's result, the median of its rounds, the
ratios between configurations, and the JSON and text forms of the whole run."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field

from filter_process import filter_code

#: The ratios reported (x/y of the configurations' rates), when both ran.
RATIOS = (("c", "b"), ("c", "a"), ("d", "b"), ("d", "c"), ("r", "b"), ("c", "r"),
          ("p", "b"), ("p", "a"), ("p", "c"))


@dataclass
class Result:
    """The outcome of one configuration."""

    config: str
    label: str
    messages: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    deferred: int = 0
    bounced: int = 0
    error: str | None = None
    filter: dict[str, object] = field(default_factory=dict)


def median_result(results: list[Result]) -> Result:
    """The run with the median rate (a failed run wins, so failures are never hidden)."""
    failed = [r for r in results if r.error]
    if failed:
        return failed[0]
    ordered = sorted(results, key=lambda r: r.rate)
    return ordered[(len(ordered) - 1) // 2]


def summary(results: dict[str, Result], args: argparse.Namespace) -> dict[str, object]:
    """Everything printed, as one JSON-able dict."""
    def ratio(x: str, y: str) -> float | None:
        rx, ry = results.get(x), results.get(y)
        if rx and ry and rx.rate and ry.rate and not rx.error and not ry.error:
            return round(rx.rate / ry.rate, 3)
        return None

    return {
        "messages": args.messages, "connections": args.connections, "source": args.source,
        "filter_maxproc": args.filter_maxproc, "workers": args.workers,
        "filter_code": filter_code(),
        "cpus": os.cpu_count(),
        "checks": args.checks, "disabled_checks": args.disable_checks,
        "dns": ("local NSD, every name NXDOMAIN" if getattr(args, "local_dns_resolver", None)
                else "the system's resolvers"),
        "clamd_tmp": args.clamd_tmp or "instance directory (disk)",
        "results": {k: asdict(r) for k, r in results.items()},
        "rounds": args.rounds,
        **{f"ratio_{x}_to_{y}": ratio(x, y) for x, y in RATIOS},
        "round_rates": {k: v for k, v in getattr(args, "round_rates", {}).items()},
    }


def print_text(data: dict[str, object]) -> None:
    print(f"{data['messages']} messages, {data['connections']} connections, "
          f"source {data['source']}, filter maxproc {data['filter_maxproc']}, "
          f"scanner workers {data['workers']}, {data['cpus']} CPUs")
    print(f"filter code: {data['filter_code']}")
    print(f"checks {data['checks']}, disabled {data['disabled_checks'] or '-'}; "
          f"DNS checks ask {data['dns']}")
    if "d" in data["results"]:  # type: ignore[operator]
        print(f"(d)'s clamd keeps its temporary files in {data['clamd_tmp']}")
    results = data["results"]
    assert isinstance(results, dict)
    for kind, res in results.items():
        if res["error"]:
            print(f"({kind}) {res['label']}: FAILED\n    " +
                  "\n    ".join(str(res["error"]).splitlines()))
            continue
        print(f"({kind}) {res['label']}: {res['rate']:.1f} msg/s "
              f"({res['messages']} in {res['seconds']:.2f} s; deferred {res['deferred']}, "
              f"bounced {res['bounced']})")
        flt = res["filter"]
        if flt:
            print(f"    filter time median {flt.get('median_ms', '-')} ms, "
                  f"p95 {flt.get('p95_ms', '-')} ms ({flt['log_lines']} log lines); "
                  f"PSS {int(flt['pss_kib']) / 1024:.1f} MiB in {flt['processes']} processes; "
                  f"CPU {flt['cpu_seconds']} s during the timed run "
                  f"({1000 * flt['cpu_seconds'] / res['messages']:.1f} ms per message: "
                  f"user {1000 * flt['cpu_user_seconds'] / res['messages']:.1f}, "
                  f"system {1000 * flt['cpu_system_seconds'] / res['messages']:.1f})")
    if data["rounds"] > 1:
        print(f"medians of {data['rounds']} interleaved rounds; rates per round: "
              f"{data['round_rates']}")
    for x, y in RATIOS:
        value = data[f"ratio_{x}_to_{y}"]
        if value is not None:
            print(f"({x})/({y}) = {value:.3f}")

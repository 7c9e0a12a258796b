"""``scanner status``: what the running filter's workers are doing (amavisd-nanny style).

Reads ``server.status_file`` (the scoreboard the master and workers keep in shared
memory) and prints one line per worker (PID, open transactions, seconds since its last
heartbeat, the stage and mail_id it entered last) and the counters since the master
started (messages, categories, actions, errors, worker restarts, watchdog kills).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from scanner import config as cfgmod
from scanner.errors import ConfigError
from scanner.policy.decide import PRECEDENCE
from scanner.serve.scoreboard import ACTIONS, BoardState, StatusFileError, read_board


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show what the running filter's workers are doing")
    p.add_argument("--config", "-c", help=f"TOML file (default: ${cfgmod.ENV_VAR} or "
                   f"{cfgmod.DEFAULT_PATH} if present, else shipped defaults)")
    p.add_argument("--file", help="status file to read (default: server.status_file)")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="machine-readable output")
    form.add_argument("--prometheus", action="store_true",
                      help="Prometheus text format (for node_exporter's textfile collector)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = args.file
    if not path:
        config = cfgmod.load(cfgmod.resolve_path(args.config))
        path = config.server.status_file
        if not path:
            raise ConfigError(f"{config.source}: 'server.status_file' is empty: set it to a "
                              "file (e.g. /var/lib/scanner/status) and restart scanner "
                              "serve to use scanner status")
    try:
        board = read_board(path)
    except StatusFileError as exc:
        print(f"scanner status: {path}: {exc.strerror}", file=sys.stderr)
        return 1
    running = _alive(board.master_pid)
    if args.json:
        print(json.dumps(as_dict(board, path, running), indent=2))
    elif args.prometheus:
        print(prometheus(board, running), end="")
    else:
        print(render(board, path, running))
    return 0 if running else 3


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def as_dict(board: BoardState, path: str, running: bool) -> dict[str, Any]:
    now = time.monotonic()
    return {
        "file": path,
        "running": running,
        "master_pid": board.master_pid,
        "started": board.started_wall,
        "uptime_seconds": round(now - board.started_mono, 1) if running else None,
        "worker_restarts": board.restarts,
        "watchdog_kills": board.watchdog_kills,
        "workers": [{
            "slot": i, "pid": s.pid, "open_transactions": s.open_transactions,
            "connections": s.connections, "connection_limit": s.connection_limit,
            "heartbeat_age": round(now - s.heartbeat, 2),
            "stage": s.stage or None, "mail_id": s.mail_id or None,
            "stage_age": round(now - s.stage_since, 2) if s.mail_id else None,
            "starts": s.starts, "messages": s.counters["messages"],
        } for i, s in enumerate(board.slots)],
        "counters": board.totals(),
        "hung_messages": [{"digest": r.digest, "count": r.count, "last": r.last}
                          for r in board.hang_records()],
    }


def render(board: BoardState, path: str, running: bool) -> str:
    now = time.monotonic()
    if running:
        head = (f"scanner serve: master {board.master_pid}, up {_age(now - board.started_mono)}, "
                f"{len(board.slots)} workers ({path})")
    else:
        head = f"scanner serve is not running ({path} holds the last figures)"
    lines = [head, "",
             f"{'slot':>4} {'pid':>7} {'starts':>6} {'messages':>9} {'conn':>7} {'open':>4} "
             f"{'beat':>6}  doing"]
    for i, s in enumerate(board.slots):
        doing = (f"{s.stage} mail_id {s.mail_id} for {now - s.stage_since:.1f} s"
                 if s.mail_id else "idle")
        beat = f"{now - s.heartbeat:.1f}s" if running else "-"
        conn = f"{s.connections}/{s.connection_limit}"
        lines.append(f"{i:>4} {s.pid:>7} {s.starts:>6} {s.counters['messages']:>9} "
                     f"{conn:>7} {s.open_transactions:>4} {beat:>6}  {doing}")
    totals = board.totals()
    lines += ["", f"messages {totals['messages']}: passed {totals['passed']}, blocked "
              f"{totals['blocked']}; errors {totals['errors']}, timeouts {totals['timeouts']}, "
              f"refused as hanging {totals['hung']}"]
    cats = [f"{c} {totals['category:' + c]}" for c in PRECEDENCE if totals["category:" + c]]
    acts = [f"{a} {totals['action:' + a]}" for a in ACTIONS if totals["action:" + a]]
    lines.append("categories: " + (", ".join(cats) or "-"))
    lines.append("actions: " + (", ".join(acts) or "-"))
    if totals["sqllog:written"] or totals["sqllog:dropped"]:
        lines.append(f"SQL log: messages written {totals['sqllog:written']}, dropped "
                     f"{totals['sqllog:dropped']}")
    lines.append(f"worker restarts {board.restarts}, watchdog kills {board.watchdog_kills}")
    hung = board.hang_records()
    if hung:
        lines.append("messages that stopped a worker (digest, times, last):")
        lines += [f"  {r.digest} {r.count} "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.last))}" for r in hung]
    return "\n".join(lines)


_METRICS = {
    "messages": ("scanner_messages_total", "counter",
                 "Messages scanned with a summary log line since the master started."),
    "errors": ("scanner_errors_total", "counter",
               "Messages answered 451 after an error inside the filter."),
    "timeouts": ("scanner_timeouts_total", "counter",
                 "Messages answered 451 after server.message_timeout."),
    "hung": ("scanner_hung_refusals_total", "counter",
             "Messages answered 451 unscanned: they stopped a worker server.hang_limit "
             "times."),
}


def prometheus(board: BoardState, running: bool) -> str:
    """The scoreboard in Prometheus's text exposition format."""
    now = time.monotonic()
    totals = board.totals()
    out: list[str] = []

    def metric(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    metric("scanner_up", "gauge", "1 if the scanner serve master is running.",
           [("", int(running))])
    for key, (name, kind, text) in _METRICS.items():
        metric(name, kind, text, [("", totals[key])])
    metric("scanner_verdicts_total", "counter", "Messages passed or blocked.",
           [('{verdict="passed"}', totals["passed"]),
            ('{verdict="blocked"}', totals["blocked"])])
    metric("scanner_categories_total", "counter", "Messages by category.",
           [(f'{{category="{c}"}}', totals["category:" + c]) for c in PRECEDENCE])
    metric("scanner_actions_total", "counter", "Actions taken, as in the summary log line.",
           [(f'{{action="{a}"}}', totals["action:" + a]) for a in ACTIONS])
    metric("scanner_sqllog_messages_total", "counter",
           "Messages whose rows the SQL log ([sql_log]) wrote or dropped.",
           [('{outcome="written"}', totals["sqllog:written"]),
            ('{outcome="dropped"}', totals["sqllog:dropped"])])
    metric("scanner_worker_restarts_total", "counter",
           "Workers started again after one exited or was killed.", [("", board.restarts)])
    metric("scanner_watchdog_kills_total", "counter",
           "Workers killed by the watchdog (event loop silent too long).",
           [("", board.watchdog_kills)])
    if running:
        metric("scanner_uptime_seconds", "gauge", "Seconds since the master started.",
               [("", round(now - board.started_mono, 1))])
        metric("scanner_worker_open_transactions", "gauge", "Open transactions per worker.",
               [(f'{{slot="{i}"}}', s.open_transactions) for i, s in enumerate(board.slots)])
        metric("scanner_worker_connections", "gauge",
               "Open SMTP/LMTP connections per worker.",
               [(f'{{slot="{i}"}}', s.connections) for i, s in enumerate(board.slots)])
        metric("scanner_worker_connection_limit", "gauge",
               "Each worker's share of server.concurrency.",
               [(f'{{slot="{i}"}}', s.connection_limit) for i, s in enumerate(board.slots)])
        metric("scanner_worker_heartbeat_age_seconds", "gauge",
               "Seconds since each worker's last heartbeat.",
               [(f'{{slot="{i}"}}', round(now - s.heartbeat, 2))
                for i, s in enumerate(board.slots)])
    return "\n".join(out) + "\n"


def _age(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h{minutes:02d}m"
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"

"""Throughput benchmark: a private Postfix alone, with the loop ceiling, and with scanner.

Pushes N messages through three configurations in one run and reports messages per
second from the first send until the last message is in the Maildir:

  a) Postfix alone, no content_filter;
  b) the loop ceiling: content_filter straight back at Postfix's own reinjection smtpd
     (the cost of the extra queue pass, the upper bound for any after-queue filter);
  c) Postfix with ``python -m scanner serve`` as the content filter.

On request also (d) the same with ClamAV, (r) a bare relay in the filter's place, and
(p) the filter before queue: the public smtpd hands each message to it through
``smtpd_proxy_filter`` (``scanner postfix-config --proxy``), so Postfix queues each
message once, not twice.

For (c) it also reports the filter's per-message time (median, p95) from its log lines
and its memory (PSS of the master and its workers). Needs root and Postfix; see
README.md next to this file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scanner.config.model import ListenerConfig  # noqa: E402
from scanner.postfix_config import data_done_timeout  # noqa: E402
from scanner.postfix_proxy import after_filter_service, proxy_options  # noqa: E402
from scanner.testing.clamd import ClamdInstance  # noqa: E402
from scanner.testing.dns_server import nxdomain_server  # noqa: E402
from scanner.testing.postfix import (  # noqa: E402
    PostfixError,
    PostfixInstance,
    free_port,
    make_base_dir,
    postfix_available,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import DEFAULT_CORPUS, load_corpus  # noqa: E402
from filter_process import (  # noqa: E402
    MESSAGE_TIMEOUT,
    FloorRelayProcess,
    ScannerProcess,
)
from report import Result, median_result, print_text, summary  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"
SENDER = "sender@example.test"
RECIPIENTS = tuple(f"user{i}@example.test" for i in range(20))
SMTP_SOURCE_RCPT = "bench@example.test"
LABELS = {
    "a": "Postfix alone (no content_filter)",
    "b": "loop ceiling (content_filter -> own reinjection smtpd)",
    "c": "Postfix + scanner serve (ClamAV check off)",
    "d": "Postfix + scanner serve (ClamAV check on, private clamd)",
    "r": "Postfix + floor relay (bench/throughput/floor_relay.py: a bare asyncio relay)",
    "p": "Postfix's smtpd_proxy_filter -> scanner serve, before queue (ClamAV check off)",
}


# -- sending -----------------------------------------------------------------------------


class Sender:
    """Send messages over ``connections`` parallel SMTP sessions, reusing each session."""

    def __init__(self, port: int, messages: Sequence[bytes], connections: int) -> None:
        self.port = port
        self.messages = messages
        self.connections = max(1, min(connections, len(messages)))
        self._next = 0
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def run(self) -> None:
        threads = [threading.Thread(target=self._session, args=(i,), daemon=True)
                   for i in range(self.connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} send errors, first: {self.errors[0]}")

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= len(self.messages):
                return None
            self._next += 1
            return self._next - 1

    def _session(self, number: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=300) as smtp:
                smtp.ehlo(f"bench{number}.test")
                while (index := self._take()) is not None:
                    rcpt = RECIPIENTS[index % len(RECIPIENTS)]
                    smtp.sendmail(SENDER, [rcpt], self.messages[index])
        except (OSError, smtplib.SMTPException) as exc:
            self.errors.append(f"session {number}: {exc!r}")


def smtp_source(port: int, count: int, connections: int, size: int) -> None:
    """Send ``count`` generated messages with Postfix's smtp-source."""
    argv = [SMTP_SOURCE, "-4", "-d", "-s", str(connections), "-m", str(count), "-l", str(size),
            "-f", SENDER, "-t", SMTP_SOURCE_RCPT, "-S", "bench", f"127.0.0.1:{port}"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({result.returncode}): {result.stderr.strip()}")


# -- delivery ------------------------------------------------------------------------------


def delivered(inst: PostfixInstance) -> int:
    """Number of messages in all Maildirs of the instance (cheap enough to poll)."""
    total = 0
    domain_dir = inst.mail_dir / "example.test"
    try:
        users = list(os.scandir(domain_dir))
    except FileNotFoundError:
        return 0
    for user in users:
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                total += sum(1 for _ in os.scandir(os.path.join(user.path, sub)))
    return total


def wait_count(inst: PostfixInstance, target: int, stall: float,
               alive: Callable[[], str | None] = lambda: None) -> float:
    """Wait until ``target`` messages are delivered; monotonic time when it happened."""
    last, last_change = -1, time.monotonic()
    while True:
        now_count = delivered(inst)
        now = time.monotonic()
        if now_count >= target:
            return now
        if now_count != last:
            last, last_change = now_count, now
        problem = alive()
        if problem or now - last_change > stall:
            why = problem or f"no delivery for {stall:g} s"
            raise RuntimeError(f"stuck at {now_count}/{target} delivered: {why}\n"
                               f"{_deferral_hint(inst.log_text())}"
                               f"--- postfix log tail ---\n{inst.log_tail(5)}")
        time.sleep(0.02)


def _deferral_hint(log: str) -> str:
    """The last reason Postfix gave for deferring a message, with advice for check failures."""
    reasons = [line.partition("status=deferred ")[2] for line in log.splitlines()
               if "status=deferred " in line]
    if not reasons:
        return ""
    hint = f"last deferral: {reasons[-1]}\n"
    if "_FAIL" in reasons[-1]:
        hint += ("a scanner check failed: make what it needs reachable (e.g. clamd) or run "
                 "with --disable-checks NAME\n")
    return hint


# -- one configuration -----------------------------------------------------------------------


def run_config(kind: str, args: argparse.Namespace, messages: Sequence[bytes]) -> Result:
    """Build a fresh Postfix for configuration ``kind`` (a, b, c), push N messages, measure."""
    result = Result(config=kind, label=LABELS[kind])
    base = make_base_dir(prefix=f"scanner-bench-{kind}-")
    reinject_port, filter_port = free_port(), free_port()
    target = {"a": None, "b": reinject_port, "c": filter_port, "d": filter_port,
              "r": filter_port, "p": None}[kind]
    proxy: dict[str, object] = {}
    if kind == "p":  # the public smtpd hands each message to the filter before queueing
        proxy = {"smtpd_options": proxy_options(ListenerConfig(port=filter_port),
                                                MESSAGE_TIMEOUT, args.filter_maxproc),
                 "smtpd_maxproc": max(args.filter_maxproc, args.connections),
                 "reinject_builder": after_filter_service}
    inst = PostfixInstance(
        base=base, smtpd_port=free_port(), reinject_port=reinject_port,
        filter=None if target is None else f"scanner:[127.0.0.1]:{target}",
        filter_maxproc=args.filter_maxproc, filter_timeout=data_done_timeout(MESSAGE_TIMEOUT),
        extra_main=dict(p.split("=", 1) for p in args.postfix_param),
        **proxy,  # type: ignore[arg-type]
    )
    clamd = (ClamdInstance(base / "clamd", max_threads=4,
                           tmp_root=Path(args.clamd_tmp) if args.clamd_tmp else None)
             if kind == "d" else None)
    scanner = None
    try:
        if clamd is not None:
            clamd.start()
        if kind in "cdp":
            scanner = ScannerProcess(base, filter_port, reinject_port, args,
                                     clamd.unix_endpoint if clamd is not None else None)
        elif kind == "r":
            scanner = FloorRelayProcess(base, filter_port, reinject_port, args.workers)
        inst.start()
        if scanner is not None:
            scanner.start()
        alive = scanner.problem if scanner is not None else (lambda: None)
        _push(inst, args, messages[: args.warmup], alive)  # spawn processes, fill caches
        if scanner is not None:  # a summary line is written just after the 250 reply
            _wait_log_lines(scanner, 0, args.warmup)
        offset = scanner.log_size() if scanner is not None else 0
        cpu = scanner.cpu() if scanner is not None else (0.0, 0.0)
        started = time.monotonic()
        done = _push(inst, args, messages[args.warmup:], alive)
        result.messages = args.messages
        result.seconds = round(done - started, 3)
        result.rate = round(args.messages / (done - started), 1)
        if scanner is not None:
            _wait_log_lines(scanner, offset, args.messages)
            result.filter = _filter_stats(scanner, offset)
            user, system = (now - before for now, before in zip(scanner.cpu(), cpu,
                                                                 strict=True))
            result.filter["cpu_seconds"] = round(user + system, 2)
            result.filter["cpu_user_seconds"] = round(user, 2)
            result.filter["cpu_system_seconds"] = round(system, 2)
        log = inst.log_text()
        result.deferred = log.count("status=deferred")
        result.bounced = log.count("status=bounced")
    except (RuntimeError, PostfixError, OSError, TimeoutError) as exc:
        result.error = str(exc)
    finally:
        if scanner is not None:
            scanner.stop()
        inst.stop()
        if clamd is not None:
            clamd.close()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return result


def _push(inst: PostfixInstance, args: argparse.Namespace, messages: Sequence[bytes],
          alive: Callable[[], str | None]) -> float:
    """Send a batch and wait until all of it (and everything before) is delivered."""
    if not messages:
        return time.monotonic()
    target = delivered(inst) + len(messages)
    port = inst.smtpd_port
    if args.source == "smtp-source":
        job = _Job(lambda: smtp_source(port, len(messages), args.connections, args.size))
    else:
        job = _Job(Sender(port, messages, args.connections).run)
    job.start()
    done = wait_count(inst, target, args.stall_timeout, lambda: job.error or alive())
    job.join()
    return done


class _Job(threading.Thread):
    """Run the sender in the background; keep its error for the delivery watcher."""

    def __init__(self, work: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.work()
        except (RuntimeError, OSError, smtplib.SMTPException) as exc:
            self.error = f"sending failed: {exc}"


def _wait_log_lines(scanner: ScannerProcess, offset: int, count: int,
                    limit: float = 10.0) -> None:
    """Wait (briefly) until ``count`` summary lines follow ``offset`` in the filter's log.

    Postfix may deliver a message before the filter has written its log line (the line
    follows the reply), so counting right after the last delivery can miss or, for the
    warm-up, misattribute a line."""
    deadline = time.monotonic() + limit
    while len(scanner.filter_times(offset)) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def _filter_stats(scanner: ScannerProcess, offset: int) -> dict[str, object]:
    stats: dict[str, object] = dict(scanner.memory())
    times = sorted(scanner.filter_times(offset))
    stats["log_lines"] = len(times)
    if times:
        stats["median_ms"] = statistics.median(times)
        stats["p95_ms"] = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return stats


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--messages", type=int, default=500, help="messages per configuration")
    p.add_argument("--connections", type=int, default=20, help="parallel SMTP sessions")
    p.add_argument("--source", choices=("corpus", "smtp-source"), default="corpus")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--size", type=int, default=4096, help="smtp-source payload bytes")
    p.add_argument("--seed", type=int, default=1, help="corpus sampling seed")
    p.add_argument("--configs", default="abcd",
                   help="which configurations to run, e.g. bc; r = the floor relay, p = "
                        "the filter before queue through smtpd_proxy_filter (neither in "
                        "the default)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the configurations this many times, interleaved; report medians")
    p.add_argument("--warmup", type=int, default=20, help="untimed messages sent first")
    p.add_argument("--workers", type=int, default=2, help="scanner worker processes")
    p.add_argument("--filter-maxproc", type=int, default=20,
                   help="Postfix maxproc of the filter transport = scanner concurrency")
    p.add_argument("--checks", default="*,dnsbl,uribl",
                   help="scanner checks to enable (comma list; default every check, "
                   "including dnsbl and uribl, which the product leaves off by default)")
    p.add_argument("--disable-checks", default="auth,dnsbl,uribl",
                   help="scanner checks to disable (default: the DNS checks, which need a "
                   "resolver this machine lacks; see bench/auth for their latency)")
    p.add_argument("--extra-toml",
                   help="a TOML file whose text is appended to the scanner configuration")
    p.add_argument("--local-dns", action="store_true",
                   help="point the DNS checks (auth, dnsbl, uribl) at a private NSD holding "
                   "an empty root zone: every lookup is answered NXDOMAIN at once, as a "
                   "local caching resolver answers most DNSBL queries (needs nsd; combine "
                   "with --disable-checks '' to turn the DNS checks on)")
    p.add_argument("--postfix-param", action="append", default=[], metavar="NAME=VALUE",
                   help="extra main.cf setting for every configuration (repeatable)")
    p.add_argument("--stall-timeout", type=float, default=60.0,
                   help="give up when no message is delivered for this long")
    p.add_argument("--clamd-tmp", default="/dev/shm" if os.path.isdir("/dev/shm") else "",
                   metavar="DIR",
                   help="where (d)'s clamd keeps its temporary files: a tmpfs, as the README "
                        "recommends (default /dev/shm); '' = the instance directory on disk")
    p.add_argument("--keep", action="store_true", help="keep the instance directories")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = p.parse_args(argv)
    if args.messages < 1 or args.connections < 1 or args.warmup < 0:
        p.error("--messages and --connections must be positive, --warmup not negative")
    if set(args.configs) - set("abcdrp") or not args.configs:
        p.error("--configs takes letters from 'abcdrp'")
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def _start_local_dns(stack: contextlib.ExitStack) -> str:
    """A private NSD answering NXDOMAIN for every name; its ``resolvers`` entry."""
    server = nxdomain_server()
    server.start()
    stack.callback(server.stop)
    return server.resolver


def _run_rounds(args: argparse.Namespace, messages: list[bytes]) -> dict[str, list[Result]]:
    runs: dict[str, list[Result]] = {}
    for number in range(args.rounds):
        for kind in sorted(set(args.configs)):
            if not args.json:
                print(f"round {number + 1}: running ({kind}) {LABELS[kind]} ...",
                      file=sys.stderr, flush=True)
            os.sync()  # the last run's queue and Maildir files written out, not in our time
            runs.setdefault(kind, []).append(run_config(kind, args, messages))
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if reason := postfix_available():
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    if args.source == "smtp-source" and not os.access(SMTP_SOURCE, os.X_OK):
        print(f"cannot run: {SMTP_SOURCE} is not installed (package postfix)", file=sys.stderr)
        return 2
    total = args.messages + args.warmup
    messages: list[bytes] = []
    if args.source == "corpus":
        messages = load_corpus(args.corpus, total, args.seed)
    else:
        messages = [b""] * total  # placeholders: smtp-source makes its own
    with contextlib.ExitStack() as stack:
        args.local_dns_resolver = _start_local_dns(stack) if args.local_dns else None
        runs = _run_rounds(args, messages)
    results = {kind: median_result(rs) for kind, rs in runs.items()}
    args.round_rates = {kind: [r.rate for r in rs] for kind, rs in runs.items()}
    data = summary(results, args)
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        print()
    else:
        print_text(data)
    return 0 if not any(r.error for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())


"""One worker process: an asyncio loop serving every listening socket it inherited.

CPU-heavy stages run in a small thread pool so the loop keeps serving other
connections, except the analysis of small messages, which is cheaper inline
(:mod:`scanner.pipeline.cpu`); several workers (processes) use every core.

A heartbeat task writes the time into the worker's scoreboard slot every second (the
master kills a worker whose loop stops beating) and retires the worker when a stage
has been stuck in its thread pool for longer than any message may take.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from decoders.registry import load_decoders
from scanner.checks.base import CheckContext, LastGood
from scanner.config import Config, ListenerConfig
from scanner.mailid import LogIds
from scanner.notices import templates_key
from scanner.pipeline.cpu import PoolJobs, inline_cpu, make_run_cpu
from scanner.pipeline.processor import Listener, Processor
from scanner.quarantine.ampdp import start_ampdp_server
from scanner.quarantine.store import Quarantine
from scanner.registry import build_checks, close_checks
from scanner.reinject.deliver import NextHop
from scanner.scores import ScoreTable, load_scores
from scanner.serve.accept import ConnectionLimit
from scanner.serve.pdp_scan import PdpScanner
from scanner.serve.reload import Reloads, handle_signals
from scanner.serve.scoreboard import WorkerSlot
from scanner.smtp.handler import FilterHandler
from scanner.smtp.server import FilterLMTP, FilterSMTP
from scanner.sqllog.writer import SqlLog

log = logging.getLogger("scanner")


HEARTBEAT_INTERVAL = 1.0
DRAIN_POLL = 0.2  # while stopping: how often sessions are checked for idleness
RETIRED = 3
"""Exit status of a worker that retired on its own (max_requests, a stuck pool stage)."""
RETIRE_QUIET = 5.0
"""A retiring worker (not one told to stop) closes a session between transactions only
once it has been quiet this long: a client that just connected, or Postfix reusing a
cached connection (it keeps one unused for 2 s, smtp_connection_cache_time_limit), is
served instead of getting 421, which Postfix reads as the filter being down (the
message waits for the queue's next run)."""


def run_worker(config: Config, sockets: Sequence[tuple[ListenerConfig, socket.socket]],
               hostname: str, ampdp: Sequence[socket.socket] = (),
               slot: WorkerSlot | None = None, connections: int = 0,
               last_good: LastGood | None = None, scores: ScoreTable | None = None) -> int:
    """Serve until SIGTERM or retirement; then stop accepting and let open transactions
    finish. Returns the exit status: 0, or :data:`RETIRED`.

    ``connections``: this worker's share of ``server.concurrency`` (SMTP/LMTP connections
    it keeps open at most, :mod:`scanner.serve.accept`); 0 = the whole setting.
    ``last_good``: what the master's checks loaded at start-up (kept when a file broke
    since, :class:`scanner.checks.base.LastGood`). ``scores``: the score table the
    master read at start (score files are read once, so a worker started later neither
    fails on a file gone since nor scores with an edit the others do not see); None =
    read the score files now. The notice templates the master read (at start, again on
    SIGHUP) are in ``last_good``; none there = read them now.

    With ``SCANNER_PROFILE_DIR`` set in the environment, the worker runs under cProfile
    and writes ``worker-PID.prof`` there when it stops (for benchmarks, not production).
    ``SCANNER_PROFILE_CLOCK=cpu`` makes it count the event-loop thread's CPU time instead
    of wall time (a wall-clock profile charges a ``send`` that let the woken reader run
    first with that reader's time).
    """
    kept = last_good if last_good is not None else LastGood()
    profile_dir = os.environ.get("SCANNER_PROFILE_DIR")
    if not profile_dir:
        return asyncio.run(_serve(config, sockets, hostname, ampdp, slot, connections, kept,
                                  scores))
    import cProfile
    import time

    cpu_clock = os.environ.get("SCANNER_PROFILE_CLOCK") == "cpu"
    profiler = cProfile.Profile(time.thread_time) if cpu_clock else cProfile.Profile()
    try:
        return profiler.runcall(asyncio.run,
                                _serve(config, sockets, hostname, ampdp, slot, connections, kept,
                                       scores))
    finally:
        profiler.dump_stats(os.path.join(profile_dir, f"worker-{os.getpid()}.prof"))


def _open_quarantine(config: Config, hostname: str) -> Quarantine | None:
    """The quarantine, or None (then mail that should be held is deferred, never lost)."""
    try:
        return Quarantine(config.quarantine, hostname=hostname)
    except Exception as exc:
        log.error("quarantine %s unusable: %s; blocked mail will be deferred",
                  config.quarantine.directory, exc)
        return None


async def _serve(config: Config, sockets: Sequence[tuple[ListenerConfig, socket.socket]],
                 hostname: str, ampdp: Sequence[socket.socket],
                 slot: WorkerSlot | None, connections: int, last_good: LastGood,
                 scores: ScoreTable | None) -> int:
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cpu")

    jobs = PoolJobs()
    run_cpu = make_run_cpu(loop, executor, jobs)
    checks = build_checks(config, CheckContext(config=config, run_cpu=run_cpu,
                                               last_good=last_good))
    quarantine = _open_quarantine(config, hostname)
    if scores is None:
        scores = load_scores(config.checks.score_files)
    sql_log = SqlLog(config.sql_log, count=slot.count if slot is not None else None) \
        if config.sql_log.enabled else None
    processor = Processor(config, checks, scores,
                          NextHop.from_config(config.reinject, hostname), hostname,
                          run_cpu=run_cpu, decoders=load_decoders(), quarantine=quarantine,
                          board=slot,
                          notices=last_good.get(templates_key(config.notices.templates_dir)),
                          sql_log=sql_log)
    stop = asyncio.Event()
    # before anything is served: a stop or reload from now on is handled, not lost
    await handle_signals(loop, stop, Reloads([*checks, *processor.reloadable], run_cpu))
    networks = tuple(ipaddress.ip_network(n, strict=False) for n in config.server.xforward_hosts)
    log_ids = LogIds()
    limit = ConnectionLimit(connections or config.server.concurrency, loop,
                            on_change=slot.connections if slot is not None else None)
    servers = []
    for lcfg, sock in sockets:
        listener = Listener(0 if lcfg.path else lcfg.port,  # 0: a Unix socket
                            "LMTP" if lcfg.protocol == "lmtp" else "ESMTP", lcfg.policy_bank)
        handler = FilterHandler(processor, listener, config.server.max_message_size, log_ids)
        cls = FilterLMTP if lcfg.protocol == "lmtp" else FilterSMTP

        def factory(cls: type = cls, handler: FilterHandler = handler) -> FilterSMTP:
            return cls(handler, max_line_length=config.server.max_line_length,
                       xforward_networks=networks, hostname=hostname,
                       ident="scanner", data_size_limit=config.server.max_message_size,
                       timeout=config.server.idle_timeout, loop=loop)

        limit.serve(sock, factory)
    scanner = PdpScanner(processor, config.server.max_message_size)
    for sock in ampdp:  # release requests, and scans for amavisd-milter
        servers.append(await start_ampdp_server(sock, quarantine, config, hostname,
                                                log_ids, scan=scanner.answer))
    log.debug("worker ready with checks: %s", ", ".join(c.name for c in checks) or "none")
    heartbeat = asyncio.create_task(_heartbeat(slot, jobs, config, stop, processor))
    chores = [asyncio.create_task(_housekeeping(c, run_cpu)) for c in checks
              if getattr(c, "housekeeping_interval", 0.0) > 0]
    await stop.wait()
    retired = heartbeat.done() and heartbeat.result()
    heartbeat.cancel()
    for chore in chores:
        chore.cancel()
    await limit.stop_listening()
    for server in servers:
        server.close()
    await _drain_connections(limit, config.server.message_timeout,
                             slot.beat if slot is not None else None,
                             RETIRE_QUIET if retired else 0.0)
    close_checks(checks)
    if sql_log is not None:  # what waits for the database gets its timeout
        await asyncio.to_thread(sql_log.close)
    executor.shutdown(wait=False, cancel_futures=True)
    return RETIRED if retired else 0


async def _heartbeat(slot: WorkerSlot | None, jobs: PoolJobs, config: Config,
                     stop: asyncio.Event, processor: Processor) -> bool:
    """Beat every second; retire the worker (set ``stop``, return True) when it has
    handled ``server.max_requests`` messages or a pool stage is stuck for good.

    A stage older than ``message_timeout + watchdog_timeout`` belongs to a message that
    was answered 451 long ago; its thread cannot be stopped and holds one of the pool's
    two threads, so the worker stops accepting, lets the others finish and exits (the
    master starts a fresh one)."""
    server = config.server
    limit = server.message_timeout + server.watchdog_timeout
    while True:
        if slot is not None:
            slot.beat()
        oldest = jobs.oldest()
        if server.watchdog_timeout and oldest is not None \
                and time.monotonic() - oldest[0] > limit:
            log.error("worker %d: stage %s of message %s stuck in the thread pool for "
                      "%.0f s (longer than server.message_timeout + "
                      "server.watchdog_timeout); retiring this worker", os.getpid(),
                      oldest[1], oldest[2].hex() or "-", time.monotonic() - oldest[0])
            if slot is not None:
                slot.record_hang(oldest[2])
            stop.set()
            return True
        if server.max_requests and processor.handled >= server.max_requests:
            log.info("worker %d retiring after %d messages (server.max_requests)",
                     os.getpid(), processor.handled)
            stop.set()
            return True
        await asyncio.sleep(HEARTBEAT_INTERVAL)


async def _housekeeping(check: object, run_cpu: Callable[..., Any]) -> None:
    """Run a check's periodic chore (the classifier's autolearn: the queued messages
    learnt into the model file) every ``housekeeping_interval`` seconds, in the thread
    pool, never in the event loop; the first after a random part of the interval, so
    that the workers started together take turns. A failing chore is logged."""
    interval: float = check.housekeeping_interval  # type: ignore[attr-defined]
    await asyncio.sleep(interval * random.uniform(0.2, 1.0))
    while True:
        try:
            with inline_cpu(False):
                await run_cpu(check.housekeeping)  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker %d: %s housekeeping failed", os.getpid(),
                          getattr(check, "name", check))
        await asyncio.sleep(interval)


async def _drain_connections(connections: ConnectionLimit, seconds: float,
                             beat: Callable[[], None] | None = None,
                             quiet_for: float = 0.0) -> None:
    """Give running transactions up to ``seconds`` to finish; sessions outside a
    transaction get ``421`` and are closed, each as soon as it is idle (with
    ``quiet_for``: once quiet for that long; at the deadline, whatever). ``beat`` (the
    scoreboard heartbeat) is called at every round: the master's watchdog goes on
    watching a stopping worker, and must not take one that is finishing for stuck."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    current = asyncio.current_task()
    while True:
        if beat is not None:
            beat()
        left = deadline - loop.time()
        connections.close_idle(quiet_for if left > 0 else 0.0)
        pending = [t for t in asyncio.all_tasks() if t is not current]
        if not pending or left <= 0:
            return
        await asyncio.wait(pending, timeout=min(DRAIN_POLL, left))

"""Chaos soak: corpus mail through a real Postfix and the filter while things get killed.

Every check is on (the DNS checks ask a private NSD, ClamAV a private clamd). While the
messages flow, at random intervals one of these happens: a scanner worker is killed
with SIGKILL (the master starts another), the master is killed (its workers follow) and
the filter is started again, the whole filter process group is killed and started
again, the next hop's processes (Postfix's reinjection smtpd) are killed in the middle
of whatever they are receiving (Postfix's master starts new ones), a worker is frozen
(SIGSTOP) for 1-1.5 s and let go (less than the watchdog allows, counting up to a second
since its last heartbeat), clamd is frozen for 1-4 s, a worker hangs (SIGSTOP) for
longer than the soak's ``server.watchdog_timeout`` (3 s) so that the master's watchdog must
kill and replace it, or clamd is killed and started again. The
messages are handed to Postfix evenly over the chaos time, so the filter is busy
throughout. Afterwards Postfix's queue is flushed until every message is delivered and
the queue is empty (a message whose copy the next hop took just before a kill is still
queued for its retry), or the time runs out, and the Maildir is counted by an
``X-Chaos-Id`` header added to each message.

What it proves: no message is lost (``missing`` must be empty). Duplicates are the
price of SMTP's own window (the next hop has the message, Postfix has not yet got our
250 when the filter dies) and are counted, not hidden.

    .venv/bin/python bench/chaos/run.py                  # 2,000 messages, 40 s of chaos
    .venv/bin/python bench/chaos/run.py -n 500 --seconds 15 --seed 3 --json
    .venv/bin/python bench/chaos/run.py --recipients 3 --protocol lmtp
    .venv/bin/python bench/chaos/run.py --wiring before-queue   # smtpd_proxy_filter

With ``--wiring before-queue`` the filter sits behind the public smtpd's
``smtpd_proxy_filter`` (``scanner postfix-config --proxy``): nothing is queued before the
filter, so a 4xx at the end of DATA leaves the message with the sender, and the sender
here retries it (every 0.5 s, as a client's queue would later); a message is lost if a
250 reached the sender and no copy reached the Maildir.

Needs root, postfix and nsd; clamd is used when installed (``--no-clamav`` to skip it).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import email
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from email.policy import compat32
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "throughput"))

from corpus import DEFAULT_CORPUS, load_corpus  # noqa: E402
from filter_process import descendants  # noqa: E402

from scanner.testing.clamd import ClamdInstance, clamd_binary  # noqa: E402
from scanner.testing.dns_server import dns_checks_toml, nxdomain_server  # noqa: E402
from tests.postfix_stack import ProxyStack, Stack  # noqa: E402

ACTIONS = ("worker", "worker", "worker", "master", "group", "nexthop", "freeze_worker",
           "hang_worker", "freeze_clamd", "clamd")
"""Drawn uniformly: killing one worker is the most common event, as in real life."""
SUMMARY = re.compile(r"\b(?:Passed|Blocked) (\S+)")
WATCHDOG = 3.0
"""The soak filter's server.watchdog_timeout: a hung worker must be gone soon after."""


@dataclass
class Result:
    """What one soak run did and found."""

    messages: int
    seed: int
    chaos_seconds: float
    events: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    missing: list[str] = field(default_factory=list)
    duplicates: int = 0
    duplicate_ids: list[str] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=dict)
    tempfailed_lines: int = 0
    seconds: float = 0.0
    clamav: bool = True
    recipients: int = 1
    protocol: str = "smtp"
    wiring: str = "after-queue"


class Chaos:
    """Kills things at random until told to stop; counts what it did."""

    def __init__(self, stack: Stack, clamd: ClamdInstance | None, rng: random.Random) -> None:
        self.stack, self.clamd, self.rng = stack, clamd, rng
        self.events: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(self.rng.uniform(0.5, 2.5))
            action = self.rng.choice(ACTIONS if self.clamd else ACTIONS[:-2])
            with self.lock:
                getattr(self, f"_{action}")()
        self.settle()

    def settle(self) -> None:
        """Everything running again."""
        with self.lock:
            if self.stack.filter.proc is None:
                self.stack.filter.start()
            if self.clamd is not None and not self.clamd.running:
                self.clamd.start()

    def _a_worker(self) -> int | None:
        """A random worker of the running filter (its master's only child processes)."""
        proc = self.stack.filter.proc
        kids = descendants(proc.pid) if proc is not None else []
        return self.rng.choice(kids) if kids else None

    def _worker(self) -> None:
        pid = self._a_worker()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.events["worker killed"] += 1

    def _master(self) -> None:
        self.stack.filter.kill_master()
        time.sleep(self.rng.uniform(0.1, 1.5))
        self.stack.filter.start()
        self.events["master killed, filter restarted"] += 1

    def _group(self) -> None:
        self.stack.filter.kill()
        time.sleep(self.rng.uniform(0.1, 1.0))
        self.stack.filter.start()
        self.events["all filter processes killed, restarted"] += 1

    def _nexthop(self) -> None:
        marker = b"-n\x00127.0.0.1:%d\x00" % self.stack.postfix.reinject_port
        killed = 0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        os.kill(int(entry.name), signal.SIGKILL)
                        killed += 1
                except (OSError, ProcessLookupError):
                    continue
        self.events["next hop smtpd killed" if killed else "next hop idle, nothing killed"] += 1

    def _freeze_worker(self) -> None:
        pid = self._a_worker()
        if pid is not None:
            self._freeze(pid, "worker frozen for a while", self.rng.uniform(1.0, 1.5))

    def _hang_worker(self) -> None:
        """Freeze a worker for longer than the watchdog allows: it must be killed."""
        pid = self._a_worker()
        if pid is None or not self._freeze(pid, "", WATCHDOG + self.rng.uniform(2.0, 3.0)):
            return
        time.sleep(0.5)  # the master reaps it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.events["worker hung, killed by the watchdog"] += 1
        else:
            self.events["worker hung, NOT KILLED by the watchdog"] += 1

    def _freeze_clamd(self) -> None:
        assert self.clamd is not None
        pid = self.clamd.pid
        if pid is not None:
            self._freeze(pid, "clamd frozen for a while", self.rng.uniform(1.0, 4.0))

    def _freeze(self, pid: int, event: str, seconds: float) -> bool:
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return False
        time.sleep(seconds)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        if event:
            self.events[event] += 1
        return True

    def _clamd(self) -> None:
        assert self.clamd is not None
        self.clamd.kill()
        time.sleep(self.rng.uniform(0.2, 2.0))
        self.clamd.start()
        self.events["clamd killed, restarted"] += 1


def _config(resolver: str, clamd: ClamdInstance | None) -> str:
    text = "[checks]\ndisabled = []\n" if clamd else '[checks]\ndisabled = ["clamav"]\n'
    if clamd is not None:
        text += f'[checks.settings.clamav]\nendpoints = ["{clamd.unix_endpoint}"]\ntimeout = 10\n'
    return text + dns_checks_toml(resolver)


def _delivered(stack: Stack) -> collections.Counter[tuple[int, str]]:
    """Copies per (message number, Maildir user)."""
    ids: collections.Counter[tuple[int, str]] = collections.Counter()
    for path in stack.postfix.maildir_messages(None):
        msg = email.message_from_bytes(path.read_bytes(), policy=compat32)
        value = str(msg.get("X-Chaos-Id", "")).strip()
        if value.isdigit():
            ids[(int(value), path.parent.parent.name)] += 1
    return ids


def _recipients(count: int) -> list[str]:
    return [f"user{i}@example.test" for i in range(count)]


def _send(stack: Stack, messages: list[bytes], spread: float, recipients: list[str],
          threads: int = 10) -> None:
    """Hand every message to Postfix, evenly over ``spread`` seconds, so that the filter
    is busy the whole time the chaos goes on."""
    start = time.monotonic()
    step = spread / max(1, len(messages))

    def one(item: tuple[int, bytes]) -> None:
        number, raw = item
        time.sleep(max(0.0, start + number * step - time.monotonic()))
        data = b"X-Chaos-Id: %d\r\n" % number + raw
        for _ in range(60):  # a hiccup, or (before queue) a 4xx: the sender tries again
            try:
                stack.postfix.send("chaos@example.org", recipients, data)
                return
            except Exception:  # noqa: BLE001 - any hiccup: try again
                time.sleep(0.5)
        raise RuntimeError(f"message {number} could not be handed to Postfix")

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, enumerate(messages)))


def soak(n: int, seconds: float, seed: int, use_clamav: bool, drain_timeout: float,
         recipients: int = 1, protocol: str = "smtp", wiring: str = "after-queue") -> Result:
    """One run: start everything, send, make chaos, drain, count."""
    rng = random.Random(seed)
    messages = load_corpus(DEFAULT_CORPUS, n, seed)
    result = Result(messages=n, seed=seed, chaos_seconds=seconds, clamav=use_clamav,
                    recipients=recipients, protocol=protocol, wiring=wiring)
    rcpts = _recipients(recipients)
    wanted = {(i, r.split("@")[0]) for i in range(n) for r in rcpts}
    began = time.monotonic()
    with contextlib.ExitStack() as stack_:
        dns = nxdomain_server()
        dns.start()
        stack_.callback(dns.stop)
        clamd = None
        if use_clamav:
            base = Path(tempfile.mkdtemp(prefix="scanner-chaos-clamd-"))
            stack_.callback(shutil.rmtree, base, True)
            clamd = ClamdInstance(base)
            clamd.start()
            stack_.callback(clamd.close)
        # hang_limit = 0: a worker frozen from outside is not the message's fault; with
        # the default, a message that happened to be in two frozen workers would be
        # refused (451, kept by Postfix) and counted missing here.
        server = f"watchdog_timeout = {WATCHDOG}\nhang_limit = 0"
        if wiring == "before-queue":  # the sender's retries stand in for a client's
            stack: Stack = ProxyStack(extra=_config(dns.resolver, clamd), workers=2,
                                      server_extra=server)
        else:
            stack = Stack(extra=_config(dns.resolver, clamd), workers=2, protocol=protocol,
                          server_extra=server)
        stack_.callback(stack.remove)
        # Postfix's master stops starting a service whose processes died abnormally for
        # service_throttle_time (60 s by default: "bad command startup -- throttling");
        # the filter answers 451 meanwhile. 5 s keeps a next-hop kill to seconds here.
        stack.postfix.extra_main["service_throttle_time"] = "5s"
        stack.postfix.add_users(*rcpts)
        stack.start()
        chaos = Chaos(stack, clamd, rng)
        thread = threading.Thread(target=chaos.run, args=(seconds,))
        thread.start()
        try:
            _send(stack, messages, seconds, rcpts)
        finally:
            thread.join()
        chaos.settle()
        deadline = time.monotonic() + drain_timeout
        while True:
            ids = _delivered(stack)
            missing = sorted(wanted - set(ids))
            # Also wait for Postfix's queue to empty: a copy the next hop took just
            # before a kill is in the Maildir while Postfix, which never got the 250,
            # still holds the message for a retry (SMTP's duplicate window); counting
            # before that retry missed its duplicate and its summary line.
            if (not missing and not stack.postfix.queue()) or time.monotonic() > deadline:
                break
            stack.postfix.flush()
            time.sleep(2)
        result.events = dict(chaos.events)
        result.delivered = len(set(ids) & wanted)
        result.missing = [f"{i} to {user}" for i, user in missing]
        result.duplicate_ids = sorted(f"{i} to {user}" for (i, user), c in ids.items() if c > 1)
        result.duplicates = sum(c - 1 for c in ids.values())
        lines = stack.filter.log_lines()
        result.categories = dict(collections.Counter(
            m.group(1) for line in lines for m in [SUMMARY.search(line)] if m))
        result.tempfailed_lines = sum("TempFailed" in line for line in lines)
    result.seconds = round(time.monotonic() - began, 1)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--messages", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=40.0, help="how long to make chaos")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-clamav", action="store_true", help="ClamAV check off, no clamd")
    p.add_argument("--drain-timeout", type=float, default=400.0,
                   help="seconds to wait for the queue to empty after the chaos")
    p.add_argument("--recipients", type=int, default=1,
                   help="recipients per message (user0..userK-1@example.test)")
    p.add_argument("--protocol", choices=("smtp", "lmtp"), default="smtp",
                   help="Postfix's filter transport and the filter's listener")
    p.add_argument("--wiring", choices=("after-queue", "before-queue"), default="after-queue",
                   help="the filter as content_filter, or before queue behind the "
                        "public smtpd's smtpd_proxy_filter (SMTP only): there a 4xx at "
                        "the end of DATA leaves the message with the sender, which retries")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.wiring == "before-queue" and args.protocol != "smtp":
        p.error("--wiring before-queue speaks SMTP to the filter (smtpd_proxy_filter)")
    use_clamav = not args.no_clamav and clamd_binary() is not None
    result = soak(args.messages, args.seconds, args.seed, use_clamav, args.drain_timeout,
                  args.recipients, args.protocol, args.wiring)
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(f"{result.messages} messages to {result.recipients} recipients each over "
              f"{result.protocol.upper()} ({result.wiring}), seed {result.seed}, "
              f"{result.chaos_seconds:g} s "
              f"of chaos (ClamAV {'on' if result.clamav else 'off'}): {result.events}")
        print(f"delivered {result.delivered} of {result.messages * result.recipients}; missing "
              f"{len(result.missing)} {result.missing[:20]}; duplicates {result.duplicates}")
        print(f"summary lines by category {result.categories}; tempfailed "
              f"{result.tempfailed_lines}; {result.seconds} s in all")
    return 0 if not result.missing else 1


if __name__ == "__main__":
    sys.exit(main())

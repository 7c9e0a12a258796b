"""Drive one Task through the pipeline and turn the outcome into SMTP replies.

The transactional rule lives here: a recipient gets 2xx only after the next hop took
the message for it; every exception or timeout becomes ``451 4.5.0`` so Postfix keeps
the message and retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from decoders.registry import load_decoders
from scanner import logline
from scanner.config import Config
from scanner.dsn import build_failure_dsn, wants_failure_dsn
from scanner.pipeline import policy
from scanner.pipeline.checks import run_checks
from scanner.pipeline.parse import header_text, parse_headers, postfix_queue_id
from scanner.pipeline.unpack import limits_from, unpack_task
from scanner.reinject.deliver import NextHop, Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.scores import ScoreTable
from scanner.task import Destiny, Recipient, Task
from scanner.trace import prepend_headers, received_header

log = logging.getLogger("scanner")
RunCpu = Callable[..., Awaitable[Any]]


async def _inline(func: Callable[..., Any], *args: Any) -> Any:
    """Run CPU work in the loop (used only where no executor is given, e.g. tests)."""
    return func(*args)


@dataclass(frozen=True, slots=True)
class Listener:
    """What the processor needs to know about the socket a message came in on."""

    port: int
    protocol: str  # "ESMTP" or "LMTP"
    policy_bank: str


class Processor:
    """Scans and reinjects; one per worker process."""

    def __init__(self, config: Config, checks: Sequence, scores: ScoreTable,
                 hop: NextHop, hostname: str, run_cpu: RunCpu | None = None,
                 decoders: Sequence | None = None) -> None:
        self._config = config
        self._run_cpu = run_cpu or _inline
        self._decoders = list(decoders) if decoders is not None else None
        self._limits = limits_from(config)
        self._checks = list(checks)
        self._scores = scores
        self._pool = ConnectionPool(hop, max_idle=config.server.concurrency)
        self._hostname = hostname

    async def handle(self, task: Task, listener: Listener) -> list[str]:
        """One reply per recipient. Never raises (except cancellation)."""
        n = len(task.envelope.recipients)
        try:
            return await asyncio.wait_for(self._process(task, listener),
                                          self._config.server.message_timeout)
        except TimeoutError:
            log.error("(%s) processing timed out after %g s, mail_id: %s, tempfail",
                      task.log_id, self._config.server.message_timeout, task.mail_id)
            return [f"451 4.5.0 Error in processing, id={task.log_id}, timed out"] * n
        except Exception:
            log.exception("(%s) error in processing, mail_id: %s, tempfail",
                          task.log_id, task.mail_id)
            return [f"451 4.5.0 Error in processing, id={task.log_id}"] * n

    async def _process(self, task: Task, listener: Listener) -> list[str]:
        task.message = parse_headers(task.raw)
        task.queue_id = postfix_queue_id(task.message)
        unpacked = None
        try:
            if self._config.decode.enabled:
                if self._decoders is None:
                    self._decoders = load_decoders()
                unpacked = await unpack_task(task, self._run_cpu, self._limits, self._decoders,
                                             self._config.server.tmp_dir or None)
            await run_checks(task, self._checks, self._config.checks.timeout)
        finally:
            if unpacked is not None:
                unpacked.close()
        policy.decide(task, self._scores, self._config.policy)
        replies, actions, queued_as = await self._act(task, listener)
        self._log_summary(task, listener, actions, queued_as)
        return replies

    async def _act(self, task: Task, listener: Listener) -> tuple[list[str], list[str], list]:
        rcpts = task.envelope.recipients
        replies = [""] * len(rcpts)
        actions: list[str] = []
        direction = self._direction(task, listener)
        passed = [i for i, r in enumerate(rcpts)
                  if task.verdicts[r.address].destiny is Destiny.PASS]
        queued_as: list[str] = []
        for i, rcpt in enumerate(rcpts):
            verdict = task.verdicts[rcpt.address]
            if verdict.destiny is Destiny.DISCARD:
                replies[i] = f"250 2.7.0 Ok, discarded, id={task.log_id} - {verdict.category}"
                _add(actions, f"Discarded{direction}")
            elif verdict.destiny is Destiny.REJECT:
                replies[i] = f"554 5.7.0 Reject, id={task.log_id} - {verdict.category}"
                _add(actions, f"Rejected{direction}")
            elif verdict.destiny is Destiny.TEMPFAIL:
                replies[i] = (f"451 4.5.0 Error in processing, id={task.log_id}, "
                              f"{verdict.reason or 'check failed'}")
                _add(actions, f"Tempfailed{direction}")
        if passed:
            group = [rcpts[i] for i in passed]
            headers = [received_header(task, self._hostname, listener.port,
                                       listener.protocol, [r.address for r in group])]
            out = Outgoing(task.envelope.sender, group, task.envelope.mail_params,
                           prepend_headers(task.raw, headers + task.add_headers), task.client)
            result = await deliver(self._pool, out, all_or_nothing=listener.protocol != "LMTP")
            for i, reply in zip(passed, result.replies, strict=True):
                replies[i] = reply
            queued_as = result.queued_as
            for reply in result.replies:
                _add(actions, _delivery_action(reply) + direction)
        if listener.protocol != "LMTP":
            replies = await self._report_partial_failure(task, replies, actions, direction)
        return replies, actions, queued_as

    async def _report_partial_failure(self, task: Task, replies: list[str], actions: list[str],
                                      direction: str) -> list[str]:
        """SMTP can't refuse some recipients after DATA: bounce those ourselves."""
        if not any(r.startswith("2") for r in replies) or any(r.startswith("4") for r in replies):
            return replies
        rcpts = task.envelope.recipients
        failed = [i for i, r in enumerate(replies) if r.startswith("5")]
        if not failed:
            return replies
        notify = [i for i in failed if wants_failure_dsn(task, rcpts[i])]
        if notify:
            dsn = build_failure_dsn(task, [(rcpts[i], replies[i]) for i in notify],
                                    self._hostname)
            out = Outgoing("", [Recipient(task.envelope.sender)], (), dsn, task.client)
            sent = await deliver(self._pool, out, all_or_nothing=True)
            if not sent.replies[0].startswith("2"):
                log.warning("(%s) could not send a DSN (%s); deferring the whole message",
                            task.log_id, sent.replies[0])
                return [sent.replies[0] if r.startswith("5") else
                        f"451 4.5.0 Error in processing, id={task.log_id}, DSN failed"
                        for r in replies]
            _add(actions, f"Bounced{direction}")
        out_replies = list(replies)
        for i in failed:
            done = "DSN was sent" if i in notify else "no DSN requested"
            out_replies[i] = f"250 2.5.0 Ok <{rcpts[i].address}>, {done}, id={task.log_id}"
            if i not in notify:
                _add(actions, f"NoBounce{direction}")
        return out_replies

    def _direction(self, task: Task, listener: Listener) -> str:
        originating = listener.policy_bank.upper() == "ORIGINATING"
        local = self._config.policy.local_domains
        all_local = not local or all(
            r.address.rpartition("@")[2].lower() in local for r in task.envelope.recipients)
        if originating:
            return "Internal" if all_local and local else "Outbound"
        return "Inbound" if all_local else "OpenRelay"

    def _log_summary(self, task: Task, listener: Listener, actions: list[str],
                     queued_as: list[str]) -> None:
        verdicts = list(task.verdicts.values())
        category = verdicts[0].category if verdicts else "CLEAN"
        blocked = any(v.destiny is not Destiny.PASS for v in verdicts)
        scored = any(self._scores.get(h.symbol).weight for h in task.hits)
        summary = logline.Summary(
            log_id=task.log_id,
            verb="Blocked" if blocked else "Passed",
            category=_log_category(task, category),
            actions=actions,
            client_addr=task.client.addr,
            client_port=task.client.port,
            sender=task.envelope.sender if task.envelope.sender != "<>" else "",
            recipients=[r.address for r in task.envelope.recipients],
            queue_id=task.queue_id,
            message_id=header_text(task.message, "Message-ID"),
            mail_id=task.mail_id,
            hits=f"{policy.score_of(task, self._scores):.3f}" if scored else "-",
            size=len(task.raw),
            queued_as=queued_as,
            elapsed_ms=task.elapsed_ms(),
        )
        log.info("%s", logline.render(summary))


def _add(actions: list[str], action: str) -> None:
    if action not in actions:
        actions.append(action)


def _delivery_action(reply: str) -> str:
    if reply.startswith("2"):
        return "Relayed"
    return "Tempfailed" if reply.startswith("4") else "Rejected"


def _log_category(task: Task, category: str) -> str:
    if category == "VIRUS":
        names = sorted({o for h in task.hits if h.symbol.endswith("_VIRUS") for o in h.options})
        return f"INFECTED ({', '.join(names)})" if names else "INFECTED"
    if category == "BANNED":
        banned = [h.part for h in task.hits if h.symbol == "BANNED_FILE" and h.part]
        return f"BANNED ({banned[0]})" if banned else "BANNED"
    if category == "UNCHECKED" and any(h.symbol == "DECODE_ENCRYPTED" for h in task.hits):
        return "UNCHECKED-ENCRYPTED"
    return category

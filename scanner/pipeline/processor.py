"""Drive one Task through the pipeline and turn the outcome into SMTP replies.

The transactional rule lives here: a recipient gets 2xx only after the next hop took
the message for it; every exception or timeout becomes ``451 4.5.0`` so Postfix keeps
the message and retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from decoders.registry import load_decoders
from decoders.unpack import Unpacked
from scanner import logline
from scanner.actions.disclaimer import originators
from scanner.actions.run import Context, Deliver, Outcome, carry_out
from scanner.config import Config, PolicyConfig
from scanner.config.policy import apply
from scanner.ml import autolearn
from scanner.notices import Notices, NoticeTemplate
from scanner.pipeline.checks import run_checks
from scanner.pipeline.cpu import RunCpu, current_message, inline_cpu
from scanner.pipeline.parse import message_id, parse_headers, postfix_queue_id
from scanner.pipeline.unpack import limits_from, tmp_root, unpack_task
from scanner.policy.decide import PRECEDENCE, decide
from scanner.policy.effective import (
    bank_names,
    client_is_local,
    is_local,
    listener_banks,
    message_policy,
    recipient_is_local,
    recipient_policy,
    sender_is_local,
)
from scanner.policy.sources import make_sources, overrides_for
from scanner.reinject.deliver import NextHop
from scanner.reinject.pool import ConnectionPool
from scanner.scores import ScoreTable
from scanner.serve.scoreboard import NullSlot, message_digest, summary_counters
from scanner.sqllog.build import message_row
from scanner.task import Destiny, Hit, Task, banned_parts, virus_names

log = logging.getLogger("scanner")


async def _inline(func: Callable[..., Any], *args: Any) -> Any:
    """Run CPU work in the loop (used only where no executor is given, e.g. tests)."""
    return func(*args)


@dataclass(frozen=True, slots=True)
class Listener:
    """What the processor needs to know about the socket a message came in on."""

    port: int  # 0: a Unix socket listener
    protocol: str  # "ESMTP" or "LMTP"
    policy_bank: str


class Processor:
    """Scans and reinjects; one per worker process."""

    def __init__(self, config: Config, checks: Sequence, scores: ScoreTable,
                 hop: NextHop, hostname: str, run_cpu: RunCpu | None = None,
                 decoders: Sequence | None = None, quarantine: Any = None,
                 board: Any = None,
                 notices: Mapping[str, NoticeTemplate] | None = None,
                 sql_log: Any = None) -> None:
        """``notices``: the notice templates read at start (None: read them now); they
        are read again from ``[notices] templates_dir`` on SIGHUP (:attr:`reloadable`).
        ``sql_log``: where each message's SQL log rows go (scanner.sqllog.writer)."""
        self._config = config
        # the worker's scoreboard slot: stages and counters for the watchdog and status
        self._board = board if board is not None else NullSlot()
        self.handled = 0  # messages handled (server.max_requests)
        self._quarantine = quarantine
        self._kinds = {c.name: getattr(c, "kind", "other") for c in checks}
        self._kinds.update(decode="virus", policy="spam")
        self._virus_scanner = any(getattr(c, "kind", "") == "virus" for c in checks)
        self._run_cpu = run_cpu or _inline
        self._decoders = list(decoders) if decoders is not None else None
        self._limits = limits_from(config)
        self._checks = list(checks)
        self._delivery_hooks = [(getattr(c, "name", str(c)), c.after_delivery)
                                for c in self._checks
                                if callable(getattr(c, "after_delivery", None))]
        self._signers = tuple(c for c in checks if callable(getattr(c, "sign", None)))
        self._scores = scores
        self._pool = ConnectionPool(hop, max_idle=config.server.concurrency)
        self._hostname = hostname
        self._notices = Notices(config.notices.templates_dir, notices)
        self._sources = make_sources(config)  # policy SQL, then LDAP
        # the classifier when it autolearns (scanner.ml.autolearn), and where each
        # check's points count for it
        self._learner = next((c for c in self._checks
                              if getattr(c, "autolearn", None) is not None), None)
        self._by_name = {getattr(c, "name", ""): c for c in self._checks}
        self._sql_log = sql_log

    @property
    def reloadable(self) -> list[Any]:
        """What besides the checks reloads on SIGHUP (scanner.serve.reload): the notice
        templates and the caches of the policy SQL and LDAP lookups."""
        return [self._notices, *self._sources]

    async def handle(self, task: Task, listener: Listener,
                     deliver: Deliver | None = None) -> list[str]:
        """One reply per recipient. Never raises (except cancellation).

        ``deliver`` replaces delivery to the next hop for the passed recipients (see
        :class:`scanner.actions.run.Context`); everything else stays the same."""
        n = len(task.envelope.recipients)
        self.handled += 1
        task.digest = message_digest(task.raw)
        limit = self._config.server.hang_limit
        hangs = self._board.hangs(task.digest) if limit else 0
        if hangs >= limit > 0:
            log.error("(%s) message %s stopped the filter %d times before; not scanned "
                      "again: tempfail (server.hang_limit %d)", task.log_id,
                      task.digest.hex(), hangs, limit)
            self._board.count(["hung"])
            return [f"451 4.3.0 Message stopped the content filter {hangs} times, not "
                    f"scanned again, id={task.log_id}"] * n
        counted: list[str] = []
        self._board.begin(task)
        try:
            async with asyncio.timeout(self._config.server.message_timeout) as scope:
                task.deadline = scope.when()  # checks bound their own retries by it
                with current_message(task.digest):
                    replies, counted = await self._process(task, listener, deliver)
                return replies
        except TimeoutError:
            counted = ["timeouts"]
            log.error("(%s) processing timed out after %g s, mail_id: %s, tempfail",
                      task.log_id, self._config.server.message_timeout, task.mail_id)
            return [f"451 4.5.0 Error in processing, id={task.log_id}, timed out"] * n
        except Exception:
            counted = ["errors"]
            log.exception("(%s) error in processing, mail_id: %s, tempfail",
                          task.log_id, task.mail_id)
            return [f"451 4.5.0 Error in processing, id={task.log_id}"] * n
        finally:
            self._board.end(counted)

    async def analyse(self, task: Task, listener: Listener,
                      keep_parts: bool = False) -> Unpacked | None:
        """parse -> unpack -> checks -> policy: fill ``task`` up to its verdicts.

        With ``keep_parts`` the caller gets the unpacked result and must close it."""
        task.message = parse_headers(task.raw)
        task.queue_id = task.queue_id or postfix_queue_id(task.message)  # AM.PDP gives it
        unpacked = None
        board = self._board
        try:
            with inline_cpu(len(task.raw) <= self._config.server.inline_cpu_max_size):
                if self._config.decode.enabled:
                    if self._decoders is None:
                        self._decoders = load_decoders()
                    board.stage(task, "unpack")
                    unpacked = await unpack_task(task, self._run_cpu, self._limits,
                                                 self._decoders, tmp_root(self._config))
                await run_checks(task, self._checks, self._config.checks.timeout,
                                 board.stage, self._scores)
        finally:
            if unpacked is not None and not keep_parts:
                unpacked.close()
        board.stage(task, "policy")
        await self._decide(task, listener)
        if self._learner is not None:
            self._decide_learning(task)
        return unpacked if keep_parts else None

    def _decide_learning(self, task: Task) -> None:
        """The classifier's autolearn decision for ``task`` (scanner.ml.autolearn)."""
        assert self._learner is not None
        if any(v.spam_scanned for v in task.verdicts.values()):
            decision = autolearn.decide(task.hits, self._scores, self._area_of,
                                        self._learner.autolearn)
        else:  # as SpamAssassin is not even asked then
            decision = autolearn.Decision("no", reason="spam checks bypassed")
        task.autolearn = decision.label
        task.scratch["autolearn"] = decision  # scanner scan shows it
        log.debug("(%s) autolearn=%s: %.3f points (header %.3f, body %.3f, classifier "
                  "%.3f)%s", task.log_id, decision.label, decision.points, decision.header,
                  decision.body, decision.learner,
                  f": {decision.reason}" if decision.reason else "")

    def _area_of(self, hit: Hit) -> str | None:
        """Where a hit's points count for autolearning (its check says)."""
        check = self._by_name.get(hit.source)
        area_of = getattr(check, "symbol_area", None)
        if area_of is not None:
            return area_of(hit.symbol)
        return getattr(check, "autolearn_area", None)

    async def _process(self, task: Task, listener: Listener,
                       deliver: Deliver | None = None) -> tuple[list[str], list[str]]:
        """The replies, and the scoreboard counters the message adds to."""
        await self.analyse(task, listener)
        self._board.stage(task, "actions")
        outcome = await carry_out(task, Context(
            pool=self._pool, scores=self._scores, hostname=self._hostname, port=listener.port,
            protocol=listener.protocol, directions=self._directions(task, listener),
            virus_scanned=self._virus_scanner, quarantine=self._quarantine,
            run_cpu=self._run_cpu, signers=self._signers, deliver=deliver,
            subdir_levels=self._config.quarantine.subdir_levels, notices=self._notices))
        self._after_delivery(task, outcome)
        self._queue_for_learning(task, outcome)
        counters, category = self._log_summary(task, outcome)
        if self._sql_log is not None:
            self._log_to_sql(task, outcome, category)
        return outcome.replies, counters

    def _log_to_sql(self, task: Task, outcome: Outcome, category: str) -> None:
        """Hand the message's rows to the SQL log (written later, in its thread); a
        failure only costs the rows: it is logged, the message goes on."""
        try:
            row = message_row(task, outcome, category, self._config.sql_log,
                              self._hostname, self._scores,
                              self._config.quarantine.directory, self._config.policy)
            if row is not None:
                self._sql_log.submit(row)
        except Exception:
            log.exception("(%s) SQL log: the message's rows could not be made", task.log_id)

    def _queue_for_learning(self, task: Task, outcome: Outcome) -> None:
        """Queue an autolearnt message for the classifier, once the message has its
        final answer (a 4xx brings it back; it is queued then). A failure only costs
        the lesson: it is logged, the message goes on."""
        if self._learner is None or task.autolearn not in ("spam", "ham") \
                or any(r.startswith("4") for r in outcome.replies):
            return
        try:
            self._learner.queue_for_learning(task)
        except Exception as exc:
            log.error("(%s) autolearn: could not queue the message for learning: %s",
                      task.log_id, exc)

    def _after_delivery(self, task: Task, outcome: Outcome) -> None:
        """Tell checks that want it (``after_delivery(task, recipients)``, e.g. pen pals
        recording outgoing mail) which recipients the next hop took the message for,
        passed (not discarded, rejected or bounced). A failing hook is only logged."""
        if not self._delivery_hooks:  # the common case: nothing to do per message
            return
        passed = [task.envelope.recipients[i].address for i in outcome.passed]
        if not passed:
            return
        for name, hook in self._delivery_hooks:
            try:
                hook(task, passed)
            except Exception:
                log.exception("(%s) %s: after_delivery failed", task.log_id, name)

    async def _decide(self, task: Task, listener: Listener) -> None:
        banks = bank_names(self._config, listener.policy_bank, task.client.addr)
        if await self._sender_is_my_user(task, banks):
            banks.append("MYUSERS")
        task.policy_banks = tuple(banks)  # the log line names them
        base = message_policy(self._config, banks)
        rows = await self._source_rows(task, base)
        for rcpt in task.envelope.recipients:
            policy = recipient_policy(base, rcpt.address)
            row = rows.get(rcpt.address)
            policy = apply(policy, row) if row is not None else policy
            task.verdicts[rcpt.address] = decide(task, rcpt.address, policy, self._scores,
                                                 self._kinds)
        if any(v.policy.allow_disclaimers for v in task.verdicts.values()):
            await self._originator_locality(task, base)

    async def _sender_is_my_user(self, task: Task, banks: list[str]) -> bool:
        """amavis's MYUSERS bank: with ``[policy_banks.MYUSERS]`` defined, mail of our
        own users (through the ORIGINATING or MYNETS bank) whose envelope sender is local
        (its SQL row's or LDAP entry's ``local``, its recipient table's, else
        ``local_domains``) gets that bank after the others."""
        sender = task.envelope.sender
        if "MYUSERS" not in self._config.policy_banks or "@" not in sender \
                or not {"ORIGINATING", "MYNETS"} & {b.upper() for b in banks}:
            return False
        base = message_policy(self._config, banks)
        rows = await self._address_rows([sender], base)
        return sender_is_local(base, sender, rows.get(sender))

    async def _address_rows(self, addresses: list[str], base: PolicyConfig
                            ) -> dict[str, Any]:
        """The policy sources' settings of addresses other than the recipients (the
        originators), looked up as a recipient's would be; {} without sources."""
        if not self._sources or not addresses:
            return {}
        wanted = [(a, is_local(base, a)) for a in addresses]
        return await asyncio.to_thread(overrides_for, self._sources, wanted,
                                       base.recipient_delimiter)

    async def _originator_locality(self, task: Task, base: PolicyConfig) -> None:
        """Which of the message's originators (From, Sender, envelope sender...) are
        local, asking the policy sources as for a recipient: a disclaimer goes on mail
        from local senders, and a site whose domains live in its directory names them
        there, not in local_domains. Only when some recipient may get a disclaimer."""
        addresses = originators(task)
        rows = await self._address_rows(addresses, base)
        task.originator_local = {a: sender_is_local(base, a, rows.get(a))
                                 for a in addresses}

    async def _source_rows(self, task: Task, base: PolicyConfig) -> dict[str, Any]:
        """Each recipient's settings from policy SQL and LDAP (None: none), read in a
        thread so a slow or locked source holds up this message only, not the worker's
        other sessions; a source that cannot be read raises (the message is deferred)."""
        if not self._sources:
            return {}
        wanted = [(r.address, is_local(base, r.address)) for r in task.envelope.recipients]
        return await asyncio.to_thread(overrides_for, self._sources, wanted,
                                       base.recipient_delimiter)

    def _directions(self, task: Task, listener: Listener) -> dict[str, str]:
        """amavis's mail direction per recipient: Inbound or OpenRelay (local or not),
        from the ORIGINATING bank Internal or Outbound (with no local_domains, which
        makes everyone local, originating mail counts as Outbound)."""
        originating = "ORIGINATING" in (b.upper() for b in listener_banks(listener.policy_bank))
        out = {}
        for rcpt in task.envelope.recipients:
            verdict = task.verdicts.get(rcpt.address)
            policy = verdict.policy if verdict is not None else self._config.policy
            local = recipient_is_local(policy, rcpt.address)
            if originating:
                known = policy.local_domains or policy.local is not None
                out[rcpt.address] = "Internal" if local and known else "Outbound"
            else:
                out[rcpt.address] = "Inbound" if local else "OpenRelay"
        return out

    def _log_summary(self, task: Task, outcome: Outcome) -> tuple[list[str], str]:
        """Log the summary lines (amavis's: ``Passed`` for the recipients the next hop
        took, ``Blocked`` for the others: discarded, rejected, bounced, or deferred with
        4xx for a retry); return the scoreboard counters they add to and the message's
        category (``MTA-BLOCKED`` included)."""
        verdicts = list(task.verdicts.values())
        kept = [v for v in verdicts if v.destiny not in (Destiny.PASS, Destiny.TEMPFAIL)]
        # both lines name the blocking category (amavis's [:ccat|major], the message's
        # blocking one when a recipient is blocked), which for a lover of a higher one
        # is not the highest category found
        named = kept or verdicts
        worst = min(named, key=lambda v: PRECEDENCE.index(v.category)) if named else None
        category = worst.category if worst else "CLEAN"
        scored = worst is not None and worst.spam_scanned and any(
            self._scores.get(h.symbol).weight for h in worst.hits)
        # amavis: a copy the next hop did not take makes the message's blocking category
        # MTA-BLOCKED (CC_MTA), unless a recipient's policy blocked it
        blocked_by_mta = bool(outcome.refused and not kept)
        shown = "MTA-BLOCKED" if blocked_by_mta else _log_category(task, category)
        summary = logline.Summary(
            log_id=task.log_id,
            verb="",
            category=shown,
            actions=outcome.actions,
            client_addr=task.client.addr,
            client_port=task.client.port,
            sender=task.envelope.sender,
            recipients=[],
            queue_id=task.queue_id,
            message_id=message_id(task.message),
            mail_id=task.mail_id,
            hits=f"{worst.score:.3f}" if scored and worst else "-",
            size=len(task.raw),
            queued_as=outcome.queued_as,
            elapsed_ms=task.elapsed_ms(),
            quarantine=outcome.quarantine,
            policy_banks=task.policy_banks,
            local=client_is_local(self._config, task.client.addr),
            dkim_sd=tuple(task.dkim_valid),
            dkim_new=tuple(task.dkim_new),
        )
        took = set(outcome.passed)
        rcpts = list(enumerate(r.address for r in task.envelope.recipients))
        passed = [a for i, a in rcpts if i in took]
        blocked = [a for i, a in rcpts if i not in took]
        for line in logline.render_lines(summary, passed, blocked):
            log.info("%s", line)
        verbs = ["Passed"] * bool(passed) + ["Blocked"] * bool(blocked)
        return (summary_counters(verbs, category, outcome.actions),
                "MTA-BLOCKED" if blocked_by_mta else category)


def _log_category(task: Task, category: str) -> str:
    if category == "VIRUS":
        names = virus_names(task.hits)
        return f"INFECTED ({', '.join(names)})" if names else "INFECTED"
    if category == "BANNED":
        banned = banned_parts(task.hits)
        return f"BANNED ({banned[0]})" if banned else "BANNED"
    if category == "UNCHECKED" and any(h.symbol == "DECODE_ENCRYPTED" for h in task.hits):
        return "UNCHECKED-ENCRYPTED"
    return category

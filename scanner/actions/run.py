"""Carry out the per-recipient verdicts of one message and build the replies.

Order matters for "nothing is lost": the archive copies go first (``archive_to``
mailboxes, then ``archive_directory`` files; a copy not taken or not written defers the
message, and a file of a message deferred later is removed, since the retry writes it
again), then the quarantine copy is written and fsynced (a failure there defers the
whole message), then the DSNs of bounced recipients go out
(a DSN the next hop defers defers the whole message under SMTP, before any copy was
delivered, so the retry duplicates nothing), then passed recipients are delivered in
groups with identical edits, then notifications. Under SMTP a temporary failure
anywhere defers everything, before anything is delivered when possible.

Over SMTP one reply stands for every recipient, as amavis answers: if every recipient
was discarded or rejected by policy (at least one rejected) the reject goes back to
Postfix; if some passed, a policy reject becomes a DSN from us (under amavis's DSN
rules: none to a faked or null sender, none above ``dsn_cutoff_level``) and 250.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.actions import archiving
from scanner.actions.body_edits import edited_body
from scanner.actions.bounce import bounce_allowed
from scanner.actions.copies import send_copy
from scanner.actions.headers import prefix_subject, without
from scanner.actions.notify import notify_admins
from scanner.actions.recipient_notice import notify_recipients
from scanner.actions.tagging import Edits, edits_for, spam_header_fields
from scanner.dsn import build_failure_dsn, mail_params, wants_failure_dsn
from scanner.pipeline.parse import header_display, header_text
from scanner.reinject.deliver import Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.scores import ScoreTable
from scanner.task import Destiny, Recipient, Task
from scanner.trace import prepend_headers, received_header

log = logging.getLogger("scanner")


@dataclass(slots=True)
class Outcome:
    """Replies per recipient plus what the log line reports."""

    replies: list[str]
    by_recipient: dict[int, str] = field(default_factory=dict)
    """Each recipient's one status for the log, with its direction: as amavis counts
    them, a later status of a recipient replaces its earlier one (a reject that became
    a DSN is ``Bounced``, not ``Rejected`` too)."""
    quarantined: bool = False
    queued_as: list[str] = field(default_factory=list)
    quarantine: str | None = None
    secret_id: str = ""
    """The held copy's secret_id (authorises its release); empty when none was held."""
    archived: list[tuple[Path, list[int]]] = field(default_factory=list)
    """Archive files written (``archive_directory``), each with its recipients' indexes."""
    mailed_archive: bool = False
    """An ``archive_to`` mailbox took a copy (it stays archived, whatever follows)."""
    refused: list[int] = field(default_factory=list)
    """Recipients whose copy the next hop did not take (4xx, 5xx, or unreachable):
    amavis gives the message its MTA-BLOCKED category then, unless policy blocked it."""

    @property
    def actions(self) -> list[str]:
        """The statuses of the log line, each once, then ``Quarantined`` and
        ``Archived`` (amavis's order)."""
        return (list(dict.fromkeys(self.by_recipient[i] for i in sorted(self.by_recipient)))
                + (["Quarantined"] if self.quarantined else [])
                + (["Archived"] if self.archived or self.mailed_archive else []))

    @property
    def passed(self) -> list[int]:
        """The recipients (indexes) the next hop took the message for, or (a milter's
        scan) the MTA goes on delivering it to: ``Relayed``/``Accepted``, amavis's
        D_PASS with a 2xx from the next hop (its ``%D``). Every other recipient was
        kept from it: discarded, rejected, bounced (a next hop's refusal too) or
        deferred (amavis's ``%O``)."""
        return [i for i, status in sorted(self.by_recipient.items())
                if status.startswith(("Relayed", "Accepted"))]

    def act(self, action: str, ctx: Context, task: Task, idx: Iterable[int]) -> None:
        """Log ``action`` for the recipients at ``idx``, each with its mail direction
        (amavis: ``DiscardedInbound``, ``RelayedOpenRelay``, ...)."""
        for i in idx:
            self.by_recipient[i] = action + ctx.direction_of(task.envelope.recipients[i].address)


@dataclass(frozen=True, slots=True)
class Context:
    """What the actions need besides the Task."""

    pool: ConnectionPool
    scores: ScoreTable
    hostname: str
    port: int
    protocol: str  # ESMTP or LMTP
    directions: Mapping[str, str]
    """Each recipient's mail direction for the log (Inbound, OpenRelay, Internal,
    Outbound), by address."""
    virus_scanned: bool
    quarantine: Any  # scanner.quarantine.store.Quarantine or None
    run_cpu: Callable[..., Awaitable[Any]]
    signers: tuple[Any, ...] = ()
    """Checks with ``async sign(task, data) -> [(name, value)]`` (e.g. DKIM): called on
    the final bytes of each delivered copy; their headers go in front."""
    deliver: Deliver | None = None
    """What happens to the passed recipients instead of delivery to the next hop (AM.PDP
    scanning for a milter: the MTA keeps the message, :mod:`scanner.serve.pdp_scan`);
    it sets their replies and actions. None: :func:`_deliver_groups`."""
    subdir_levels: int = 1
    """The quarantine's layout, also used for archive files."""
    notices: Mapping[str, Any] | None = None
    """The notice templates ([notices] templates_dir, :mod:`scanner.notices`); None =
    the shipped ones."""

    def direction_of(self, address: str) -> str:
        return self.directions.get(address, "Inbound")


Deliver = Callable[[Task, Context, Outcome, list[int]], Awaitable[None]]


async def carry_out(task: Task, ctx: Context) -> Outcome:
    """Archive, quarantine, block, deliver and notify; the replies and log actions."""
    out = Outcome([""] * len(task.envelope.recipients))
    try:
        await _carry_out(task, ctx, out)
    except BaseException:  # the caller answers 451 for all: the retry archives it again
        archiving.drop_files(task, out)
        raise
    await archiving.unarchive_if_retried(task, ctx, out,
                                         _retried(task, ctx, out, ctx.protocol != "LMTP"))
    return out


async def _carry_out(task: Task, ctx: Context, out: Outcome) -> Outcome:
    rcpts = task.envelope.recipients
    verdicts = [task.verdicts[r.address] for r in rcpts]
    smtp = ctx.protocol != "LMTP"
    temp = [i for i, v in enumerate(verdicts) if v.destiny is Destiny.TEMPFAIL]
    for i in temp:
        out.replies[i] = (f"451 4.5.0 Error in processing, id={task.log_id}, "
                          f"{verdicts[i].reason or 'check failed'}")
    if temp and smtp:
        out.replies = [out.replies[temp[0]]] * len(rcpts)
        out.act("TempFailed", ctx, task, range(len(rcpts)))
        return out
    live = [i for i in range(len(rcpts)) if i not in temp]
    unarchived = await archiving.archive(task, ctx, out, live)
    if unarchived:
        _defer(task, ctx, out, unarchived, "archiving failed")
        if smtp:
            return out
        live = [i for i in live if i not in unarchived]
    held = [i for i in live if verdicts[i].quarantine]
    if not await _quarantine(task, ctx, out, held):
        if smtp:
            return out
        live = [i for i in live if i not in held]
    await _blocked(task, ctx, out, [i for i in live if verdicts[i].destiny is not Destiny.PASS])
    deferred = [r for r in out.replies if r.startswith("4")]
    if deferred and smtp:  # a DSN could not go out: nothing delivered yet, retry it all
        out.replies = [deferred[0]] * len(rcpts)
        await _unstore_if_retried(task, ctx, out, held, _retried(task, ctx, out, smtp))
        return out
    await (ctx.deliver or _deliver_groups)(task, ctx, out, [
        i for i in live if verdicts[i].destiny is Destiny.PASS])
    out.act("TempFailed", ctx, task, temp)
    if smtp:
        out.replies = await _partial_failure(task, ctx, out)
    retried = _retried(task, ctx, out, smtp)
    await _unstore_if_retried(task, ctx, out, held, retried)
    if all(retried):
        return out  # notices go out with the attempt that settles the message
    await notify_admins(task, ctx.pool, ctx.hostname, out.quarantine, ctx.notices)
    await notify_recipients(task, ctx.pool, ctx.hostname, out.replies, out.quarantine,
                            ctx.notices)
    return out


def _retried(task: Task, ctx: Context, out: Outcome, smtp: bool) -> list[bool]:
    """Which recipients Postfix will try again: under SMTP any 4xx defers them all (one
    reply for the message, see :func:`scanner.smtp.handler.aggregate`). Those are
    logged ``TempFailed``, whatever happened to them before (amavis counts the reply
    Postfix got: a copy delivered before the deferral is delivered again)."""
    replies = out.replies
    if smtp:
        retried = [any(r.startswith("4") for r in replies)] * len(replies)
    else:
        retried = [r.startswith("4") for r in replies]
    out.act("TempFailed", ctx, task, [i for i, again in enumerate(retried) if again])
    return retried


async def _unstore_if_retried(task: Task, ctx: Context, out: Outcome, held: list[int],
                              retried: list[bool]) -> None:
    """The held copy was stored, but every held recipient will be tried again: the
    retry stores the message again under a new mail_id. Remove this copy so the
    quarantine holds one per message, not one per attempt."""
    if not out.quarantine or not held or not all(retried[i] for i in held):
        return
    try:
        await ctx.run_cpu(lambda: ctx.quarantine.delete(task.mail_id))
    except Exception as exc:  # a leftover copy is untidy, not a loss
        log.warning("(%s) deferred, but its quarantined copy %s stays: %s", task.log_id,
                    out.quarantine, exc)
        return
    log.info("(%s) deferred: quarantined copy %s removed (the retry stores it again)",
             task.log_id, out.quarantine)
    out.quarantine = None
    out.quarantined = False


async def _quarantine(task: Task, ctx: Context, out: Outcome, idx: list[int]) -> bool:
    """Store one copy for the held recipients; False (replies set to 451) on failure."""
    if not idx:
        return True
    rcpts = [task.envelope.recipients[i].address for i in idx]
    verdict = task.verdicts[rcpts[0]]
    try:
        if ctx.quarantine is None:
            raise RuntimeError("no quarantine is configured")
        record = await ctx.run_cpu(
            lambda: ctx.quarantine.store(
                mail_id=task.mail_id, raw=task.raw, sender=task.envelope.sender,
                recipients=rcpts, category=verdict.category, score=verdict.score,
                symbols=sorted({h.symbol for h in verdict.hits}),
                subject=header_display(task.message, "Subject"),
                message_id=header_text(task.message, "Message-ID"),
                client_addr=task.client.addr, policy_bank=task.policy_bank,
                mail_params=task.envelope.mail_params,
                rcpt_params={task.envelope.recipients[i].address:
                             task.envelope.recipients[i].params for i in idx},
                held_for=[r for r in rcpts if task.verdicts[r].destiny is not Destiny.PASS]))
        try:
            await _quarantine_to(task, ctx, rcpts)
        except Exception:  # deferred: the retry stores it again, under a new mail_id
            await ctx.run_cpu(lambda: ctx.quarantine.delete(task.mail_id))
            raise
    except Exception as exc:
        log.error("(%s) quarantine failed: %s; deferring", task.log_id, exc)
        _defer(task, ctx, out, idx, "quarantine failed")
        return False
    out.quarantine = str(getattr(record, "relative_path", "") or getattr(record, "path", ""))
    out.quarantined = True
    out.secret_id = str(getattr(record, "secret_id", "") or "")
    return True


async def _quarantine_to(task: Task, ctx: Context, rcpts: list[str]) -> None:
    """Deliver the quarantined copy to the held recipients' ``quarantine_to`` addresses
    (amavis's ``$*_quarantine_to`` mailboxes). Raises unless the next hop took it for
    every address: the quarantine failed, the message defers."""
    targets = sorted({task.verdicts[r].policy.quarantine_to for r in rcpts} - {""})
    if targets:
        await send_copy(task, ctx.pool, targets, rcpts, "quarantine_to", blocked=[
            r for r in rcpts if task.verdicts[r].destiny is not Destiny.PASS])


def _defer(task: Task, ctx: Context, out: Outcome, idx: list[int], why: str) -> None:
    """451 for the recipients at ``idx`` (LMTP), or for all of them (SMTP has one reply
    for the message)."""
    reply = f"451 4.5.0 Error in processing, id={task.log_id}, {why}"
    targets = range(len(out.replies)) if ctx.protocol != "LMTP" else idx
    for i in targets:
        out.replies[i] = reply
    out.act("TempFailed", ctx, task, targets)


def edit_groups(task: Task, ctx: Context, idx: list[int]) -> list[list[tuple[int, Edits]]]:
    """The passed recipients ``idx`` grouped by identical edits (one copy per group), in
    the order of their first member."""
    groups: dict[tuple, list[tuple[int, Edits]]] = {}
    for i in idx:
        rcpt = task.envelope.recipients[i]
        edits = edits_for(task, rcpt.address, task.verdicts[rcpt.address], ctx.scores,
                          ctx.hostname, ctx.virus_scanned)
        key = (edits.headers, edits.subject_prefix, edits.drop_spam_headers, edits.defang,
               edits.disclaimer)
        groups.setdefault(key, []).append((i, edits))
    return list(groups.values())


def dropped_fields(task: Task, drop_prefix: str) -> list[tuple[int, int]]:
    """Byte ranges of ``task.raw`` a passed copy leaves out: what the checks marked
    (forged Authentication-Results) and, with ``drop_prefix``, arriving spam headers."""
    if not drop_prefix:
        return task.drop_fields
    return task.drop_fields + spam_header_fields(task.raw, drop_prefix)


def added_fields(task: Task, out: Outcome, headers: tuple[tuple[str, str], ...]
                 ) -> list[tuple[str, str]]:
    """The header fields a passed copy gets on top (below the trace header), top first."""
    quarantined = [("X-Quarantine-ID", f"<{task.mail_id}>")] if out.quarantine else []
    return [*task.add_headers, *quarantined, *headers]


async def _deliver_groups(task: Task, ctx: Context, out: Outcome, idx: list[int]) -> None:
    for members in edit_groups(task, ctx, idx):
        edits = members[0][1]
        raw = without(task.raw, dropped_fields(task, edits.drop_spam_headers))
        raw = await edited_body(task, ctx, raw, edits)
        recipients = [Recipient(e.address, task.envelope.recipients[i].params)
                      for i, e in members]
        trace = received_header(task, ctx.hostname, ctx.port, ctx.protocol,
                                [r.address for r in recipients])
        data = prepend_headers(prefix_subject(raw, edits.subject_prefix,
                                              task.envelope.smtputf8),
                               [trace, *added_fields(task, out, edits.headers)])
        data = prepend_headers(data, await signature_fields(task, ctx.signers, data))
        msg = Outgoing(task.envelope.sender, recipients, task.envelope.mail_params, data,
                       task.client)
        result = await deliver(ctx.pool, msg, all_or_nothing=ctx.protocol != "LMTP")
        tagged = _tagged(edits.headers, edits.subject_prefix)
        for (i, edits), reply in zip(members, result.replies, strict=True):
            out.replies[i] = reply
            if not reply.startswith("2"):
                out.refused.append(i)
            relabelled = edits.address != task.envelope.recipients[i].address
            out.act(_delivery_action(reply, tagged or relabelled), ctx, task, [i])
        out.queued_as += [q for q in result.queued_as if q not in out.queued_as]


async def signature_fields(task: Task, signers: tuple[Any, ...], data: bytes
                           ) -> list[tuple[str, str]]:
    """The signers' header fields for ``data`` (the final bytes of a copy), to go in
    front of it; a signer that raises defers the message (451)."""
    return [h for signer in signers for h in await signer.sign(task, data)]


async def _blocked(task: Task, ctx: Context, out: Outcome, idx: list[int]) -> None:
    bounced: list[int] = []
    for i in idx:
        v = task.verdicts[task.envelope.recipients[i].address]
        what = f"id={task.log_id} - {v.category}"
        if v.destiny is Destiny.DISCARD:
            out.replies[i] = f"250 2.7.0 Ok, discarded, {what}"
            out.act("Discarded", ctx, task, [i])
        elif v.destiny is Destiny.REJECT:
            out.replies[i] = f"{reject_status(v.category)} Reject, {what}"
            out.act("Rejected", ctx, task, [i])
        elif v.destiny is Destiny.BOUNCE:
            bounced.append(i)
    await _bounce(task, ctx, out, bounced)


async def _bounce(task: Task, ctx: Context, out: Outcome, idx: list[int]) -> None:
    """One DSN for all the bounced recipients that may have one, as amavis sends one
    per message (RFC 3461 5.2.8), not one per recipient."""
    rcpts = task.envelope.recipients
    verdicts = {i: task.verdicts[rcpts[i].address] for i in idx}
    what = {i: f"id={task.log_id} - {v.category}" for i, v in verdicts.items()}
    notify = [i for i in idx if bounce_allowed(task, verdicts[i])
              and wants_failure_dsn(task, rcpts[i])]
    for i in idx:
        if i not in notify:
            out.act("NoBounce", ctx, task, [i])
            out.replies[i] = f"250 2.5.0 Ok, {what[i]}, no DSN sent"
    if not notify:
        return
    sent = await _send_dsn(task, ctx, [
        (rcpts[i], f"{reject_status(verdicts[i].category)} Message content rejected, "
                   f"{what[i]}") for i in notify])
    for i in notify:
        if sent.startswith("5"):
            out.act("NoBounce", ctx, task, [i])
            out.replies[i] = f"250 2.5.0 Ok, {what[i]}, DSN refused by the next hop"
        elif not sent.startswith("2"):
            out.act("TempFailed", ctx, task, [i])
            out.replies[i] = f"451 4.5.0 Error in processing, id={task.log_id}, DSN not sent"
        else:
            out.act("Bounced", ctx, task, [i])
            out.replies[i] = f"250 2.5.0 Ok, {what[i]}, DSN was sent"


async def _send_dsn(task: Task, ctx: Context, failed: list[tuple[Recipient, str]]) -> str:
    """Send one failure DSN to the envelope sender; the next hop's reply. A DSN refused
    for good (5xx) is logged here: as amavis ("UNABLE TO SEND DSN"), the message is then
    dealt with, since deferring it would be refused again at every retry."""
    dsn = build_failure_dsn(task, failed, ctx.hostname, ctx.notices)
    sent = await deliver(ctx.pool, Outgoing("", [Recipient(task.envelope.sender)],
                                            mail_params(task, dsn), dsn, task.client),
                         all_or_nothing=True)
    reply = sent.replies[0]
    if reply.startswith("5"):
        log.warning("(%s) DSN to <%s> refused: %s", task.log_id, task.envelope.sender, reply)
    return reply


def reject_status(category: str) -> str:
    """amavis's reply code and enhanced status for a category refused by policy."""
    return {"BAD-HEADER": "554 5.6.0", "OVERSIZED": "552 5.3.4"}.get(category, "554 5.7.0")


async def _partial_failure(task: Task, ctx: Context, out: Outcome) -> list[str]:
    """SMTP can't refuse some recipients after DATA: bounce those ourselves."""
    replies = out.replies
    if any(r.startswith("4") for r in replies):
        return replies
    rcpts = task.envelope.recipients
    verdicts = [task.verdicts[r.address] for r in rcpts]
    policy_rejected = [i for i, v in enumerate(verdicts)
                       if v.destiny is Destiny.REJECT and replies[i].startswith("5")]
    if policy_rejected and all(v.destiny is Destiny.DISCARD or i in policy_rejected
                               for i, v in enumerate(verdicts)):
        # amavis: all discarded or rejected (one at least): the reject goes to Postfix
        return [replies[policy_rejected[0]]] * len(replies)
    if not any(r.startswith("2") for r in replies):
        return replies
    failed = [i for i, r in enumerate(replies) if r.startswith("5")]
    if not failed:
        return replies
    # amavis applies its DSN rules to every failure, a next hop's refusal too: no DSN
    # for spam above the cutoff, a faked-sender virus or bulk mail (backscatter)
    notify = [i for i in failed if wants_failure_dsn(task, rcpts[i])
              and bounce_allowed(task, verdicts[i])]
    done = "no DSN sent"
    if notify:
        sent = await _send_dsn(task, ctx, [(rcpts[i], replies[i]) for i in notify])
        if sent.startswith("4"):
            # amavis dies here too: the retry may deliver the passed copies again
            log.warning("(%s) could not send a DSN (%s); deferring the whole message",
                        task.log_id, sent)
            return [f"451 4.5.0 Error in processing, id={task.log_id}, DSN failed"] * len(replies)
        done = "DSN was sent" if sent.startswith("2") else "DSN refused by the next hop"
        out.act("Bounced" if sent.startswith("2") else "NoBounce", ctx, task, notify)
    fixed = list(replies)
    for i in failed:
        fixed[i] = (f"250 2.5.0 Ok <{rcpts[i].address}>, "
                    f"{done if i in notify else 'no DSN sent'}, id={task.log_id}")
        if i not in notify:
            out.act("NoBounce", ctx, task, [i])
    return fixed


def _delivery_action(reply: str, tagged: bool) -> str:
    """amavis's word for one delivery: ``RelayedTagged`` when our edits marked the copy
    (spam flag YES, a Subject tag, a virus or banned alert, a changed address)."""
    if reply.startswith("2"):
        return "RelayedTagged" if tagged else "Relayed"
    return "TempFailed" if reply.startswith("4") else "Rejected"


def _tagged(headers: tuple[tuple[str, str], ...], subject_prefix: str) -> bool:
    """Whether a copy's edits tag it as amavis counts it (``recip_tagged``): not the
    plain score headers of ham nor a bad-header alert, which amavis calls harmless."""
    if subject_prefix:
        return True
    for name, value in headers:
        lower = name.lower()
        if lower.endswith("-flag") and value.strip().upper() == "YES":
            return True
        if lower == "x-amavis-alert" and value.lstrip().startswith(("INFECTED", "BANNED")):
            return True
    return False

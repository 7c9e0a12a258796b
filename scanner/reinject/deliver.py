"""Send one message to the next hop and report what happened to every recipient.

The result for each recipient is an SMTP reply line ready to be quoted back to
Postfix, amavis style: ``250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: ...``.
With ``all_or_nothing`` (our SMTP listener: one reply covers every recipient) a
temporary failure of any recipient stops the transaction before DATA, so nothing is
delivered twice when Postfix retries.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from scanner.config import ReinjectConfig
from scanner.errors import NextHopError
from scanner.reinject import fit
from scanner.reinject.client import Reply, SMTPClient, crlf_lines
from scanner.reinject.pool import ConnectionPool
from scanner.reinject.xforward import check_xforward, xforward_lines
from scanner.smtp import params as esmtp
from scanner.task import ClientInfo, Recipient
from scanner.throttle import LogThrottle, held_note

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
_QUEUED_AS = re.compile(r"queued as ([A-Za-z0-9]+)")

log = logging.getLogger("scanner")


@dataclass(frozen=True, slots=True)
class NextHop:
    """Where and how to reinject."""

    host: str
    port: int
    lmtp: bool
    connect_timeout: float
    timeout: float
    helo: str
    xforward: bool
    chunking: bool = True
    warnings: LogThrottle = field(default_factory=lambda: LogThrottle(600.0), compare=False,
                                  hash=False, repr=False)
    """Repeated trouble with this hop (down, refusing XFORWARD) is logged once per 10
    minutes, with a count."""

    @classmethod
    def from_config(cls, cfg: ReinjectConfig, default_helo: str) -> NextHop:
        return cls(cfg.host, cfg.port, cfg.protocol == "lmtp", cfg.connect_timeout,
                   cfg.timeout, cfg.helo or default_helo, cfg.xforward, cfg.chunking)

    @property
    def label(self) -> str:
        return f"{'lmtp' if self.lmtp else 'smtp'}:[{self.host}]:{self.port}"


@dataclass(slots=True)
class Delivery:
    """Per-recipient replies (keyed by position in the recipient list) and queue ids."""

    replies: list[str]
    queued_as: list[str] = field(default_factory=list)
    awaiting_final: bool = False
    finished: set[int] = field(default_factory=set)  # recipients with a final reply
    answered: bool = False
    abandon: bool = False
    later: list[int] = field(default_factory=list)
    """Recipients the next hop had no room for in this transaction ("452 4.5.3 too many
    recipients") while it took others: for a following transaction."""
    accepted: int = 0  # recipients the next hop took (RCPT 2xx) in this transaction
    seen: list[Reply] = field(default_factory=list)  # replies to MAIL and RCPTs so far
    broken: bool = False  # the connection failed during the transaction


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: envelope, parameters, content, client attributes."""

    sender: str
    recipients: Sequence[Recipient]
    mail_params: tuple[esmtp.Param, ...]
    data: bytes
    client: ClientInfo


def quote(hop: NextHop, reply: Reply) -> str:
    """Our reply to Postfix quoting the next hop's, with a 2xx/451/5xx code."""
    first = reply.lines[0] if reply.lines else ""
    m = _ENHANCED.match(first)
    enhanced = m.group(0) if m else f"{reply.code // 100}.0.0"
    code = reply.code
    if 400 <= code < 500:
        code, enhanced = 451, (enhanced if enhanced.startswith("4") else "4.3.0")
    elif code < 200 or 300 <= code < 400:
        code, enhanced = 451, "4.3.0"
    return f"{code} {enhanced} from MTA({hop.label}): {reply.text}"


def tempfail(hop: NextHop, why: str) -> str:
    return f"451 4.4.1 Next hop {hop.label} failed: {why}"


async def deliver(pool: ConnectionPool, out: Outgoing, *, all_or_nothing: bool) -> Delivery:
    """Reinject ``out``; never raises for next-hop problems (they become 451 replies).

    A next hop that takes only so many recipients per transaction (Postfix's
    ``smtpd_recipient_limit``: ``452 4.5.3 Error: too many recipients`` for the rest)
    gets the others in following transactions, at most as many as it took, as RFC 5321
    4.5.3.1.10 asks and as amavis and Postfix's own smtp client do. Without that, one
    reply for all recipients (our SMTP listener) would defer the message at every retry.
    """
    hop: NextHop = pool.hop  # type: ignore[assignment]
    out = replace(out, data=crlf_lines(out.data))  # as it goes out, SIZE counts it so
    total = Delivery([tempfail(hop, "not attempted")] * len(out.recipients))
    pending = list(range(len(out.recipients)))
    room = len(pending)
    while pending:
        batch, rest = pending[:room], pending[room:]
        part = await _deliver_once(pool, replace(
            out, recipients=[out.recipients[i] for i in batch]), all_or_nothing)
        for j, i in enumerate(batch):
            total.replies[i] = part.replies[j]
        total.queued_as += [q for q in part.queued_as if q not in total.queued_as]
        total.awaiting_final |= part.awaiting_final
        if not any(r.startswith("2") for r in part.replies):
            fits = _room_before_break(part)
            if 0 < fits < len(batch):
                room = fits  # the same recipients again, fewer at a time
                continue
            break  # no progress: the rest keep their 451 ("not attempted")
        if part.later:
            room = min(room, part.accepted)
        pending = [batch[j] for j in part.later] + rest
    return total


async def _deliver_once(pool: ConnectionPool, out: Outgoing, all_or_nothing: bool
                        ) -> Delivery:
    """One transaction for ``out``. A pooled connection that turns out to be dead before
    the next hop said anything about this message is replaced by a fresh one, once."""
    hop: NextHop = pool.hop  # type: ignore[assignment]
    for attempt in (1, 2):
        result = Delivery([tempfail(hop, "not attempted")] * len(out.recipients))
        client: SMTPClient | None = None
        reused = False
        try:
            client, reused = await pool.acquire()
            await _transaction(client, hop, out, result, all_or_nothing)
            if result.abandon:
                pool.discard(client)
            else:
                pool.release(client)
            _report_recovery(hop)
            return result
        except NextHopError as exc:
            if client is not None:
                pool.discard(client)
            if reused and not result.answered and attempt == 1:
                continue
            result.broken = True
            _fail(result, hop, str(exc), len(out.recipients))
            _report_failure(hop, str(exc))
            return result
        except BaseException:
            if client is not None:
                pool.discard(client)
            raise
    raise AssertionError("unreachable")


def _room_before_break(part: Delivery) -> int:
    """How many recipients the next hop took before it said it had no room for more, in
    a transaction that broke before any content was taken; else 0. Postfix past
    ``smtpd_recipient_limit`` + ``smtpd_recipient_overshoot_limit`` counts each extra
    recipient as an error and, at ``smtpd_hard_error_limit``, says 421 and closes."""
    if not part.broken or len(part.seen) < 2 or not part.seen[0].ok:
        return 0
    if part.awaiting_final and not any(r.code == 421 for r in part.seen):
        return 0  # BDAT went with the batch: unless the next hop said it was closing
    rcpts = part.seen[1:]
    first = next((n for n, r in enumerate(rcpts) if too_many_recipients(r)), None)
    return 0 if first is None else sum(r.ok for r in rcpts[:first])


def too_many_recipients(reply: Reply) -> bool:
    """The next hop's limit of recipients per transaction (RFC 5321 4.5.3.1.10: 452, or
    552 from old servers; RFC 3463 X.5.3), not a problem of the recipient itself."""
    first = reply.lines[0] if reply.lines else ""
    return reply.code in (452, 552) and (
        first.startswith(("4.5.3", "5.5.3")) or "too many recipients" in reply.text.lower())


def _report_failure(hop: NextHop, why: str) -> None:
    """The next hop could not be used (unreachable, timed out, connection lost): logged
    at once, then once per 10 minutes with a count (every message fails the same way
    while it lasts; each one's summary line says TempFailed)."""
    held = hop.warnings.due("down")
    if held is not None:
        log.warning("next hop %s failed: %s%s",
                    hop.label, why, held_note(held, "more failed deliveries"))


def _report_recovery(hop: NextHop) -> None:
    held = hop.warnings.end("down")
    if held is not None:
        log.warning("next hop %s accepting again%s", hop.label,
                    held_note(held, "more failed deliveries"))


def _fail(result: Delivery, hop: NextHop, why: str, count: int) -> None:
    if result.awaiting_final:  # the dot went out; the outcome is unknown: retry all
        # but those the next hop answered already (LMTP: one reply per recipient)
        result.replies = [result.replies[i] if i in result.finished else tempfail(hop, why)
                          for i in range(count)]
        return
    # an accepted recipient's reply is still empty: no content went out
    result.replies = [r if r and not r.startswith("451 4.4.1 Next hop") else tempfail(hop, why)
                      for r in result.replies]


def _mail_params(client: SMTPClient, out: Outgoing) -> list[esmtp.Param]:
    keep: list[esmtp.Param] = []
    for key, value in out.mail_params:
        if ((key == "BODY" and client.supports("8BITMIME"))
                or (key == "SMTPUTF8" and client.supports("SMTPUTF8"))
                or (key in ("RET", "ENVID") and client.supports("DSN"))):
            keep.append((key, value))
    if client.supports("SIZE"):  # the content as it goes out (crlf_lines)
        keep.append(("SIZE", str(len(out.data))))
    return keep


def _rcpt_params(client: SMTPClient, rcpt: Recipient) -> list[esmtp.Param]:
    if not client.supports("DSN"):
        return []
    return [(k, v) for k, v in rcpt.params if k in ("NOTIFY", "ORCPT")]


async def _transaction(client: SMTPClient, hop: NextHop, out: Outgoing, result: Delivery,
                       all_or_nothing: bool) -> None:
    """The transaction of :func:`_send` for the recipients the next hop can be given
    (the message fitted to the extensions it offers: :mod:`.fit`); the others are
    answered with the refusal :func:`fit.fit` gives them."""
    out, refused = fit.fit(client, hop, out)
    if not refused:
        await _send(client, hop, out, result, all_or_nothing)
        return
    for i, reply in refused.items():
        result.replies[i] = reply
        result.finished.add(i)
    kept = [i for i in range(len(out.recipients)) if i not in refused]
    if not kept:
        return
    sub = Delivery([result.replies[i] for i in kept])
    try:
        await _send(client, hop, replace(out, recipients=[out.recipients[i] for i in kept]),
                    sub, all_or_nothing)
    finally:
        for j, i in enumerate(kept):
            result.replies[i] = sub.replies[j]
        result.finished |= {kept[j] for j in sub.finished}
        result.queued_as += sub.queued_as
        result.awaiting_final, result.answered = sub.awaiting_final, sub.answered
        result.abandon = sub.abandon


async def _send(client: SMTPClient, hop: NextHop, out: Outgoing, result: Delivery,
                all_or_nothing: bool) -> None:
    """XFORWARD, MAIL, RCPTs (and DATA) in one batch when the next hop pipelines."""
    sender = out.sender if out.sender and out.sender != "<>" else ""
    mail = f"MAIL FROM:<{sender}> {esmtp.render(_mail_params(client, out))}".rstrip()
    commands = [mail] + [
        f"RCPT TO:<{r.address}> {esmtp.render(_rcpt_params(client, r))}".rstrip()
        for r in out.recipients
    ]
    xforward = xforward_lines(client, hop.xforward, out.client)
    if _use_bdat(client, hop, out, all_or_nothing):
        await _bdat_transaction(client, hop, out, result, xforward, commands)
        return
    go: Reply | None = None
    if client.supports("PIPELINING"):
        for line in [*xforward, *commands, "DATA"]:
            client.queue_line(line)
        await client.flush()
        check_xforward(hop, [await client.read_reply() for _ in xforward])
        result.answered = True
        replies = result.seen
        for _ in commands:
            replies.append(await client.read_reply())
        go = await client.read_reply()
    else:
        for line in xforward:
            check_xforward(hop, [await client.command(line)])
        result.answered = True
        replies = result.seen
        for line in commands:
            replies.append(await client.command(line))
    result.answered = True
    mail_reply, rcpt_replies = replies[0], replies[1:]
    accepted = _rcpt_outcome(hop, mail_reply, rcpt_replies, result)
    first_temp = next((quote(hop, r) for i, r in enumerate(rcpt_replies)
                       if 400 <= r.code < 500 and i not in result.later), None)
    if not accepted or (all_or_nothing and first_temp):
        for i in accepted:  # accepted by the next hop, but we send no data: retry them
            result.replies[i] = first_temp or tempfail(hop, "transaction abandoned")
        if go is not None and go.code == 354:
            result.abandon = True  # mid-DATA: only closing the connection cancels it
        else:
            await _reset(client, result)
        return
    if go is None:
        go = await client.command("DATA")
    await _data(client, hop, out, result, accepted, go)


def _rcpt_outcome(hop: NextHop, mail_reply: Reply, rcpt_replies: list[Reply],
                  result: Delivery) -> list[int]:
    """The recipients the next hop accepted; the others' replies set in ``result``, and
    those it had no room for (with others accepted) kept for a later transaction."""
    if not mail_reply.ok:
        result.replies = [quote(hop, mail_reply)] * len(rcpt_replies)
        return []
    accepted = [i for i, r in enumerate(rcpt_replies) if r.ok]
    result.accepted = len(accepted)
    result.later = [i for i, r in enumerate(rcpt_replies)
                    if accepted and too_many_recipients(r)]
    result.replies = ["" if r.ok else _quote_rcpt(hop, r) for r in rcpt_replies]
    return accepted


def _quote_rcpt(hop: NextHop, reply: Reply) -> str:
    """:func:`quote` for a RCPT reply; "too many recipients" is temporary whatever its
    code (RFC 5321 4.5.3.1.10: a 552 from an old server too)."""
    if too_many_recipients(reply) and reply.code != 452:
        return f"451 4.5.3 from MTA({hop.label}): {reply.text}"
    return quote(hop, reply)


async def _data(client: SMTPClient, hop: NextHop, out: Outgoing, result: Delivery,
                accepted: list[int], go: Reply) -> None:
    if go.code != 354:
        for i in accepted:
            result.replies[i] = quote(hop, go)
        await _reset(client, result)  # a refused DATA leaves the transaction open
        return
    result.awaiting_final = True
    await client.send_data(out.data)
    reply = None
    for i in accepted:  # LMTP: one reply each, and those read before a failure stand
        if reply is None or client.lmtp:
            reply = await client.read_reply()
        result.replies[i] = quote(hop, reply)
        result.finished.add(i)
        m = _QUEUED_AS.search(reply.text)
        if reply.ok and m and m.group(1) not in result.queued_as:
            result.queued_as.append(m.group(1))
    result.awaiting_final = False
    if not all(result.replies[i].startswith("2") for i in accepted):
        await _reset(client, result)  # refused at the end: the transaction may stay open


async def _reset(client: SMTPClient, result: Delivery) -> None:
    """RSET: end the transaction the next hop still holds. After refused recipients, a
    refused DATA, or content refused by ``smtpd_end_of_data_restrictions`` (3.7), Postfix
    keeps the MAIL transaction and would answer the next message's MAIL with ``503 5.5.1
    Error: nested MAIL command``, a 5xx. Unless RSET gets 250 the connection is not
    reused; the replies already set stand."""
    try:
        reply = await client.command("RSET")
    except NextHopError:
        reply = None
    if reply is None or reply.code != 250:
        result.abandon = True


def _use_bdat(client: SMTPClient, hop: NextHop, out: Outgoing, all_or_nothing: bool) -> bool:
    """Whether to send commands and content in one batch with ``BDAT n LAST`` (RFC 3030).

    Only when an SMTP next hop pipelines and offers CHUNKING, and only where content
    going out before the RCPT replies are known cannot break a rule: with one reply for
    all recipients (our SMTP listener) only for a single recipient, since one refused
    recipient among several must stop the whole transaction. Not towards LMTP: an LMTP
    server that refuses the whole ``BDAT`` answers once, not once per recipient, and
    the count of replies to wait for would be unknown.
    """
    return (hop.chunking and not client.lmtp and client.supports("CHUNKING")
            and client.supports("PIPELINING")
            and (not all_or_nothing or len(out.recipients) == 1))


async def _bdat_transaction(client: SMTPClient, hop: NextHop, out: Outgoing,
                            result: Delivery, xforward: list[str], commands: list[str],
                            ) -> None:
    """XFORWARD, MAIL, RCPTs and ``BDAT n LAST`` with the content: one write, one wait.

    Once the batch is out the outcome is unknown until the replies arrive, so any
    failure from here on answers every recipient with a temporary error (as after
    DATA's final dot) and the pooled-connection retry does not apply.
    """
    data = out.data  # every line ends with CRLF (deliver made it so), as RFC 3030 wants
    for line in [*xforward, *commands]:
        client.queue_line(line)
    client.queue_line(f"BDAT {len(data)} LAST")
    client.queue_raw(data)
    result.answered = True
    result.awaiting_final = True
    await client.flush()
    xf_replies = [await client.read_reply() for _ in xforward]
    replies = result.seen
    for _ in commands:
        replies.append(await client.read_reply())
    mail_reply, rcpt_replies = replies[0], replies[1:]
    final = await client.read_reply()  # BDAT's: one reply, whatever came before
    result.awaiting_final = False
    # After the batch, even a 421 cannot be retried (the outcome is already decided).
    with contextlib.suppress(NextHopError):
        check_xforward(hop, xf_replies)
    accepted = _rcpt_outcome(hop, mail_reply, rcpt_replies, result)
    for i in accepted:
        result.replies[i] = quote(hop, final)
    m = _QUEUED_AS.search(final.text)
    if final.ok and m:
        result.queued_as.append(m.group(1))
    if not final.ok:
        await _reset(client, result)  # as after DATA's final dot

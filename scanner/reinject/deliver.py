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
from scanner.reinject import smtputf8
from scanner.reinject.client import Reply, SMTPClient, crlf_lines
from scanner.reinject.pool import ConnectionPool
from scanner.smtp import params as esmtp
from scanner.smtp import xtext
from scanner.task import ClientInfo, Recipient
from scanner.throttle import LogThrottle, held_note

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
_QUEUED_AS = re.compile(r"queued as ([A-Za-z0-9]+)")
XFORWARD_LINE_MAX = 500
# What Postfix's smtpd takes as XFORWARD NAME (its valid_hostname()); anything else is
# refused with 501, so it is sent as [UNAVAILABLE] instead.
_HOSTNAME = re.compile(r"[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*\.?")
_XFORWARD_PROTO_MAX = 64

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

    A pooled connection that turns out to be dead before the next hop said anything
    about this message is replaced by a fresh one, once.
    """
    hop: NextHop = pool.hop  # type: ignore[assignment]
    out = replace(out, data=crlf_lines(out.data))  # as it goes out, SIZE counts it so
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
            _fail(result, hop, str(exc), len(out.recipients))
            _report_failure(hop, str(exc))
            return result
        except BaseException:
            if client is not None:
                pool.discard(client)
            raise
    raise AssertionError("unreachable")


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


def _xforward_lines(client: SMTPClient, hop: NextHop, info: ClientInfo) -> list[str]:
    """The XFORWARD commands to send (none if off or not offered), each under 500 bytes."""
    if not hop.xforward or not client.supports("XFORWARD"):
        return []
    offered = set(client.extensions["XFORWARD"].upper().split())
    lines: list[str] = []
    line = "XFORWARD"
    for key, value in info.as_xforward().items():
        if key not in offered:
            continue
        value = _acceptable(key, value)
        item = f" {key}={xtext.encode(value) if value != '[UNAVAILABLE]' else value}"
        if len(line) + len(item) > XFORWARD_LINE_MAX:
            lines.append(line)
            line = "XFORWARD"
        line += item
    if line != "XFORWARD":
        lines.append(line)
    return lines


def _acceptable(key: str, value: str) -> str:
    """``value``, or ``[UNAVAILABLE]`` where Postfix's smtpd would refuse it."""
    if value == "[UNAVAILABLE]":
        return value
    if key == "NAME" and (len(value) > 255 or not _HOSTNAME.fullmatch(value)):
        return "[UNAVAILABLE]"
    if key == "PROTO" and len(value) > _XFORWARD_PROTO_MAX:
        return "[UNAVAILABLE]"
    return value


def _check_xforward(hop: NextHop, replies: list[Reply]) -> None:
    """A refused XFORWARD is logged and the transaction goes on, as Postfix's own
    smtp client does: the next hop merely loses the original client's attributes,
    while a temporary failure would defer the message on every retry. Only 421
    (the next hop is closing the connection) stops it."""
    for reply in replies:
        if reply.code == 421:
            raise NextHopError(f"next hop closing: {reply.text}")
        if reply.code != 250 and (held := hop.warnings.due("xforward")) is not None:
            log.warning("next hop %s refused XFORWARD, delivering without it: %s%s",
                        hop.label, reply.text, held_note(held, "more refusals"))


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
    (internationalised addresses fitted to whether it offers SMTPUTF8: :mod:`.smtputf8`);
    the others are answered with the refusal :func:`smtputf8.fit` gives them."""
    out, refused = smtputf8.fit(out, client.supports("SMTPUTF8"), hop.label)
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
    xforward = _xforward_lines(client, hop, out.client)
    if _use_bdat(client, hop, out, all_or_nothing):
        await _bdat_transaction(client, hop, out, result, xforward, commands)
        return
    go: Reply | None = None
    if client.supports("PIPELINING"):
        for line in [*xforward, *commands, "DATA"]:
            client.queue_line(line)
        await client.flush()
        _check_xforward(hop, [await client.read_reply() for _ in xforward])
        result.answered = True
        replies = [await client.read_reply() for _ in commands]
        go = await client.read_reply()
    else:
        for line in xforward:
            _check_xforward(hop, [await client.command(line)])
        result.answered = True
        replies = [await client.command(line) for line in commands]
    result.answered = True
    mail_reply, rcpt_replies = replies[0], replies[1:]
    accepted = [i for i, r in enumerate(rcpt_replies) if r.ok] if mail_reply.ok else []
    if not mail_reply.ok:
        result.replies = [quote(hop, mail_reply)] * len(out.recipients)
    else:
        result.replies = [quote(hop, r) if not r.ok else "" for r in rcpt_replies]
    first_temp = next((quote(hop, r) for r in rcpt_replies if 400 <= r.code < 500), None)
    if not accepted or (all_or_nothing and first_temp):
        for i in accepted:  # accepted by the next hop, but we send no data: retry them
            result.replies[i] = first_temp or tempfail(hop, "transaction abandoned")
        if go is not None and go.code == 354:
            result.abandon = True  # mid-DATA: only closing the connection cancels it
        else:
            await client.command("RSET")
        return
    if go is None:
        go = await client.command("DATA")
    await _data(client, hop, out, result, accepted, go)


async def _data(client: SMTPClient, hop: NextHop, out: Outgoing, result: Delivery,
                accepted: list[int], go: Reply) -> None:
    if go.code != 354:
        for i in accepted:
            result.replies[i] = quote(hop, go)
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
    replies = [await client.read_reply() for _ in commands]
    mail_reply, rcpt_replies = replies[0], replies[1:]
    accepted = [i for i, r in enumerate(rcpt_replies) if r.ok] if mail_reply.ok else []
    final = await client.read_reply()  # BDAT's: one reply, whatever came before
    result.awaiting_final = False
    # After the batch, even a 421 cannot be retried (the outcome is already decided).
    with contextlib.suppress(NextHopError):
        _check_xforward(hop, xf_replies)
    if not mail_reply.ok:
        result.replies = [quote(hop, mail_reply)] * len(out.recipients)
        return
    result.replies = [quote(hop, r) if not r.ok else "" for r in rcpt_replies]
    for i in accepted:
        result.replies[i] = quote(hop, final)
    m = _QUEUED_AS.search(final.text)
    if final.ok and m:
        result.queued_as.append(m.group(1))

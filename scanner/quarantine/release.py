"""Release a quarantined message: send it, unchanged but for one header, to the next hop.

Exactly once: a per-message file lock keeps two releasers on one host apart, and the
index row moves from ``held`` to ``releasing`` by a conditional UPDATE that only one
releaser (on any host) can win. The row becomes ``released`` when the next hop took
the message for at least one recipient, goes back to ``held`` when it took it for
none, and stays ``releasing`` when the outcome is unknown (the connection broke after
the end of data): then only ``force`` releases it again.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Callable, Sequence
from email.utils import formatdate
from typing import Any

from scanner.actions.headers import encode_words
from scanner.quarantine.envelope import Envelope
from scanner.quarantine.record import BadSecret, QuarantineError
from scanner.quarantine.store import Quarantine
from scanner.reinject.deliver import NextHop, Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.smtp import params as esmtp
from scanner.task import ClientInfo, Recipient
from scanner.text import printable

log = logging.getLogger("scanner")
_LOCAL = re.compile(r'^(?:[^\s<>()\[\],;:\\"@\x00-\x1f\x7f]+|"(?:[^"\\\r\n]|\\.)*")$')
_LABEL = re.compile(r"^(?!-)[^\s<>()\[\],;:\\\"@.\x00-\x1f\x7f]{1,63}(?<!-)$")
_LITERAL = re.compile(r"^\[(?:\d{1,3}(?:\.\d{1,3}){3}|IPv6:[0-9A-Fa-f:.]+)\]$")


def check_address(addr: str) -> str:
    """``<user@example.org>`` -> ``user@example.org``; QuarantineError if not an address."""
    value = addr.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    local, at, domain = value.rpartition("@")
    ok = (at and 0 < len(local) <= 64 and len(value) <= 254 and _LOCAL.match(local)
          and (_LITERAL.match(domain) or (
              "." in domain or domain.lower() == "localhost")
              and all(_LABEL.match(label) for label in domain.split("."))))
    if not ok:
        raise QuarantineError(f"{addr!r} is not a valid recipient address (user@domain)")
    return value


def release_header(name: str, who: str, mail_id: str, *, utf8: bool = True
                   ) -> tuple[str, str]:
    """``X-Quarantine-Released: by WHO at DATE, id=MAIL_ID``. Without ``utf8`` (the
    message goes without SMTPUTF8) a non-ASCII WHO is written as RFC 2047 encoded words:
    a UTF-8 header needs SMTPUTF8 (RFC 6532)."""
    safe = re.sub(r"[\x00-\x1f\x7f]+", " ", who).strip()[:200] or "unknown"
    if not utf8 and not safe.isascii():
        safe = encode_words(safe).decode("ascii")
    return name, f"by {safe} at {formatdate(localtime=True)}, id={mail_id}"


def _params(env: Envelope | None, raw: bytes, sender: str,
            recipients: Sequence[str]) -> tuple[esmtp.Param, ...]:
    """MAIL FROM's parameters: those the message came with (the file's envelope block),
    plus SMTPUTF8 when a changed sender or recipient needs it. For a file stored before
    the block kept them: BODY=8BITMIME for 8-bit content, SMTPUTF8 for non-ASCII
    addresses or a UTF-8 header section (as Postfix's smtputf8_autodetect_classes)."""
    if env is not None and env.mail_params is not None:
        params = list(env.mail_params)
    else:
        params = [("BODY", "8BITMIME")] if any(b >= 0x80 for b in raw) else []
        if _utf8_header(raw):
            params.append(("SMTPUTF8", None))
    has_utf8 = any(key == "SMTPUTF8" for key, _ in params)
    if not has_utf8 and not all(a.isascii() for a in [sender, *recipients]):
        params.append(("SMTPUTF8", None))
    return tuple(params)


def _utf8_header(raw: bytes) -> bool:
    """The header section holds non-ASCII text that is valid UTF-8."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    if head.isascii():
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _recipients(env: Envelope | None, targets: Sequence[str]) -> list[Recipient]:
    """The recipients with the RCPT parameters (NOTIFY, ORCPT) each original recipient
    came with; a recipient named at release that was not one gets none."""
    return [Recipient(a, env.params_of(a) if env is not None else ()) for a in targets]


async def release(q: Quarantine, pool_or_hop: ConnectionPool | NextHop, mail_id: str, *,
                  recipients: list[str] | None, requested_by: str,
                  secret_id: str | None = None, sender: str | None = None,
                  force: bool = False,
                  on_released: Callable[[str, list[str]], None] | None = None) -> list[str]:
    """Deliver the message; one reply line per recipient (2xx = the next hop took it).

    Raises :class:`QuarantineError` (or a subclass) before sending anything for an
    unknown id, a wrong ``secret_id``, a message released (or being released) already,
    an invalid address, or a missing or corrupt file.

    The index and the file are used from a worker thread: a busy index (SQLite's busy
    timeout, a PostgreSQL server far away) or a large message must not stop the event
    loop, which in ``scanner serve`` also runs the worker's SMTP sessions.

    ``on_released(mail_id, recipients)``: called (in a thread) with the recipients the
    next hop took, e.g. to mark them released in the SQL log; a failure is logged.
    """
    requested_by = printable(requested_by)  # e.g. Latin-1 from a web form: no index takes it
    rec = await asyncio.to_thread(q.get, mail_id)
    given = (secret_id or "").encode("utf-8", "surrogateescape")  # any bytes a peer sent
    if secret_id and not hmac.compare_digest(given, rec.secret_id.encode()):
        raise BadSecret(f"wrong secret_id for {mail_id}")
    targets = [check_address(a) for a in recipients] if recipients else rec.release_targets()
    if not targets:
        raise QuarantineError(f"{mail_id} has no recipients to release to; give some")
    env_sender = rec.sender
    if sender is not None:
        env_sender = "" if sender.strip() in ("", "<>") else check_address(sender)
    with q.lock(rec, "release"):
        token = await asyncio.to_thread(q.index.claim, mail_id, requested_by, force=force)
        if token is None:
            raise await asyncio.to_thread(q.why_not_held, mail_id)
        try:
            env, raw = await asyncio.to_thread(q.read_stored, rec)
        except Exception as exc:
            await asyncio.to_thread(q.index.abort, mail_id, token, [f"not sent: {exc}"])
            raise
        except BaseException as exc:  # cancelled: no awaiting any more
            q.index.abort(mail_id, token, [f"not sent: {exc!r}"])
            raise
        params = _params(env, raw, env_sender, targets)
        header = release_header(q.cfg.release_header, requested_by, mail_id,
                                utf8=any(key == "SMTPUTF8" for key, _ in params))
        data = f"{header[0]}: {header[1]}\r\n".encode() + raw
        out = Outgoing(env_sender, _recipients(env, targets), params, data,
                       ClientInfo(addr=rec.client_addr))
        pool = pool_or_hop if isinstance(pool_or_hop, ConnectionPool) else ConnectionPool(
            pool_or_hop, max_idle=1)
        try:
            result = await deliver(pool, out, all_or_nothing=True)
        finally:
            if pool is not pool_or_hop:
                await pool.close()
        # anything else (a cancellation, a bug) leaves the row 'releasing': outcome unknown
        accepted = [a for a, r in zip(targets, result.replies, strict=True) if r.startswith("2")]
        await asyncio.to_thread(_record_outcome, q, mail_id, token, accepted, result.replies,
                                result.awaiting_final)
    if accepted and on_released is not None:
        try:
            await asyncio.to_thread(on_released, mail_id, accepted)
        except Exception as exc:  # the release stands: only its mark is missing
            log.warning("release of %s: could not mark it released in the SQL log: %s",
                        mail_id, str(exc).strip() or type(exc).__name__)
    return result.replies


def released_marker(config: Any) -> Callable[[str, list[str]], None] | None:
    """What marks a release in the SQL log (``[sql_log]``, msgrcpt.rs R) for
    :func:`release`'s ``on_released``; None without a SQL log."""
    sql_log = getattr(config, "sql_log", None)
    if sql_log is None or not sql_log.enabled:
        return None
    from functools import partial

    from scanner.sqllog.db import mark_released
    return partial(mark_released, sql_log)


def _record_outcome(q: Quarantine, mail_id: str, token: str, accepted: list[str],
                    replies: list[str], awaiting_final: bool) -> None:
    """Move the row on after delivery. The next hop has answered by now, so an index
    that cannot be written (disk full, database gone) must not turn a delivered message
    into a reported failure: it is logged, and the row stays ``releasing`` (a further
    release is refused, so nothing is sent twice)."""
    try:
        if accepted:
            q.index.finish(mail_id, token, accepted, replies)
        elif awaiting_final:
            q.index.note(mail_id, token, replies)
        else:
            q.index.abort(mail_id, token, replies)
    except QuarantineError as exc:
        outcome = (f"delivered to {', '.join(accepted)}" if accepted
                   else "not delivered")
        log.error("release of %s %s (%s), but the quarantine index could not record it: "
                  "%s; it stays 'releasing' (see 'scanner quarantine show %s')", mail_id,
                  outcome, "; ".join(replies), exc, mail_id)

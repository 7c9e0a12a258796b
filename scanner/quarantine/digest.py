"""Quarantine digests: one message to each local recipient listing the mail held for them.

``scanner quarantine digest`` (run from cron, e.g. daily with ``--since 1d``) groups the
held messages of the chosen categories (SPAM by default: users do not release viruses)
by recipient, writes each local recipient one plain-text message from the ``digest``
notice template (:mod:`scanner.notices`; date, category, score, sender, Subject and id
of each message, newest first, with a release link when
``quarantine.digest_release_url`` is set) and sends it from the null sender through
the ``[reinject]`` next hop, as scanner's other notices go. amavis has no digest of its
own; sites bolted one on (the ask behind modoboa-amavis #41, amavisd-release-web #5).

Nothing is changed in the quarantine: a digest that could not be sent is simply sent
again by the next run (the command's exit status says so), and a message released
meanwhile is no longer listed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from scanner.actions.notify import new_notice, notice_reply
from scanner.config import Config
from scanner.config.policy import PolicyConfig, apply
from scanner.notices import NoticeTemplate, Value, built_in
from scanner.policy.decide import CATEGORY_KEY
from scanner.policy.effective import is_local, recipient_is_local, recipient_policy
from scanner.policy.lookup import listed
from scanner.policy.sources import make_sources, overrides_for
from scanner.quarantine.record import QuarantineRecord
from scanner.reinject.pool import ConnectionPool

#: Messages listed in one digest at most (the newest); the rest are counted.
DEFAULT_MAX_LISTED = 200


@dataclass(frozen=True, slots=True)
class Digest:
    """What one recipient is told: the held messages addressed to them, newest first."""

    recipient: str
    records: tuple[QuarantineRecord, ...]


def collect(records: Iterable[QuarantineRecord], policy: PolicyConfig,
            only: Sequence[str] = (), rows: Mapping[str, Any] | None = None
            ) -> list[Digest]:
    """One digest per local recipient of the ``held`` ``records`` (a message to three
    recipients is listed in each one's digest); ``only``: just the recipients these
    address patterns match (``user@dom``, ``user@``, ``@dom``, ``@.dom``, as the
    policy's lists). Recipients are local as the filter decides (``local_domains``, a
    recipient table's ``local``), read from ``policy``, its recipient tables and
    ``rows`` (each address's settings from the policy SQL and LDAP sources,
    :func:`source_rows`) as the filter decides them for a recipient. A message is
    listed only for the recipients it was held for, as the index recorded when it was
    stored (whatever the policy says now); for a row stored before that was recorded,
    where :func:`blocked_for` says the recipient's current policy holds its category
    (policy banks, which depend on the client and listener of each message, not
    applied). Sorted by address."""
    records = list(records)
    asked = {a.casefold() for a in candidates(records, only, policy.recipient_delimiter)}
    found: dict[str, tuple[str, dict[str, QuarantineRecord]]] = {}
    policies: dict[str, PolicyConfig | None] = {}  # None: not local
    for rec in records:
        if rec.state != "held":
            continue
        for address in rec.recipients:
            key = address.casefold()
            if key not in asked:
                continue
            if key not in policies:
                own = recipient_policy(policy, address)
                row = rows.get(address) if rows else None
                own = apply(own, row) if row is not None else own
                policies[key] = own if recipient_is_local(own, address) else None
            own = policies[key]
            if own is None:
                continue
            got = rec.got_it(address)
            if got or (got is None and not blocked_for(own, rec.category)):
                continue
            found.setdefault(key, (address, {}))[1][rec.mail_id] = rec  # once per address
    return [Digest(address, tuple(sorted(recs.values(), key=lambda r: -r.stored_at)))
            for _, (address, recs) in sorted(found.items())]


def candidates(records: Iterable[QuarantineRecord], only: Sequence[str],
               delimiter: str) -> list[str]:
    """The recipients of the held ``records`` that the ``only`` patterns ask for (none:
    every one), once each: who may get a digest, and whose policy :func:`source_rows`
    reads."""
    wanted = [a.strip().removeprefix("<").removesuffix(">") for a in only]
    seen: dict[str, str] = {}
    for rec in records:
        if rec.state == "held":
            for address in rec.recipients:
                if address.casefold() not in seen and (
                        not wanted or listed(wanted, address, delimiter)):
                    seen[address.casefold()] = address
    return list(seen.values())


def source_rows(config: Config, addresses: Sequence[str]) -> dict[str, Any]:
    """Each address's settings from the policy SQL and LDAP sources, read as for a
    recipient of a message ({} without sources); raises
    :class:`~scanner.policy.sources.PolicyLookupError` when a source cannot be read."""
    sources = make_sources(config)
    if not sources or not addresses:
        return {}
    base = config.policy
    return overrides_for(sources, [(a, is_local(base, a)) for a in addresses],
                         base.recipient_delimiter)


def blocked_for(policy: PolicyConfig, category: str) -> bool:
    """Whether a recipient with ``policy`` had mail of ``category`` held rather than
    delivered: its destiny for the category is not ``pass`` and it does not love it.
    A copy kept although it was delivered (``quarantine_passed``: a lover's spam, clean
    mail) is in the same quarantine row as the held ones; the recipient already has
    it, so the digest leaves it out."""
    key = CATEGORY_KEY.get(category)
    if key is None:  # CLEAN and SPAMMY have no destiny of their own: passed
        return False
    return getattr(policy, f"{key}_destiny") != "pass" and not getattr(policy, f"{key}_lover")


def release_link(url: str, rec: QuarantineRecord, recipient: str) -> str:
    """``quarantine.digest_release_url`` for one message and recipient (values
    URL-encoded, so a recipient cannot add parameters)."""
    return url.format(mail_id=quote(rec.mail_id, safe=""),
                      secret_id=quote(rec.secret_id, safe=""),
                      recipient=quote(recipient, safe="@"))


def when(ts: float) -> str:
    """A moment as people read it in a digest: local time to the minute, with the zone
    (``2026-12-07 14:30 UTC``)."""
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _entry(rec: QuarantineRecord, recipient: str, release_url: str) -> list[str]:
    score = f", score {rec.score:.1f}" if rec.score is not None else ""
    lines = [f"{when(rec.stored_at)}  {rec.category}{score}",
             f"  From:    <{rec.sender}>",
             f"  Subject: {rec.subject or '(none)'}",
             f"  Id:      {rec.mail_id}"]
    if release_url:
        lines.append(f"  Release: {release_link(release_url, rec, recipient)}")
    return lines


def render(digest: Digest, *, hostname: str, period: str, release_url: str = "",
           max_listed: int = DEFAULT_MAX_LISTED,
           templates: Mapping[str, NoticeTemplate] | None = None) -> tuple[bytes, bool]:
    """The digest message and whether it needs SMTPUTF8 (a non-ASCII address), from
    the ``digest`` template (``templates``: [notices] templates_dir's; None = the
    shipped one). ``period`` completes "held ... $period" (e.g. "since 2026-12-06
    07:00"). At most ``max_listed`` messages are listed, the newest; a last line counts
    the others."""
    shown = digest.records[:max_listed]
    entries: list[str] = []
    for rec in shown:
        entries += [*_entry(rec, digest.recipient, release_url), ""]
    if len(digest.records) > len(shown):
        entries.append(f"... and {len(digest.records) - len(shown)} older message(s), "
                       "not listed here.")
    else:
        entries.pop()  # the blank line after the last entry
    values: dict[str, Value] = {
        "hostname": hostname, "recipient": digest.recipient,
        "count": str(len(digest.records)), "period": period,
        "messages": tuple(entries), "release_links": "yes" if release_url else ""}
    subject, body = (templates or built_in())["digest"].render(values)
    utf8 = not digest.recipient.isascii()
    msg = new_notice(digest.recipient, subject, hostname, utf8)
    msg["Precedence"] = "bulk"  # no vacation replies to a list of junk
    msg.set_content(body, charset="utf-8")
    return msg.as_bytes(), utf8


async def send(hop: object, messages: Sequence[tuple[str, bytes, bool]]) -> list[str]:
    """Send each ``(recipient, data, smtputf8)`` from the null sender over one
    connection to ``hop`` (a :class:`~scanner.reinject.deliver.NextHop`); the next
    hop's reply to each, or why there is none."""
    pool = ConnectionPool(hop, max_idle=1)
    try:
        return [await notice_reply(pool, rcpt, data, utf8) for rcpt, data, utf8 in messages]
    finally:
        await pool.close()


def send_all(hop: object, messages: Sequence[tuple[str, bytes, bool]]) -> list[str]:
    """:func:`send` from synchronous code (the command line)."""
    return asyncio.run(send(hop, messages))

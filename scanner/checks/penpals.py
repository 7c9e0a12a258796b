"""penpals: mail from someone our user wrote to lately scores lower (amavis's pen pals).

Outgoing mail (received on a listener whose policy bank is in ``record_banks``, by
default ORIGINATING) is remembered once the next hop has taken it (``after_delivery``),
unless it was judged spam, a virus or banned: the sender, each recipient it passed for
and the Message-ID (:mod:`scanner.penpals_store`). Incoming mail is then looked up per recipient:

* ``PENPALS_REPLY``: In-Reply-To or References names a message this recipient sent;
* ``PENPALS_KNOWN``: otherwise, this recipient wrote to the envelope sender before;
  neither for an envelope sender that is one of ours (a recipient table's ``local``,
  else local_domains): mail from outside claiming one of our addresses may be forged;
* ``BOUNCE_KILLED``: a bounce (DSN, MDN, feedback report) of a message this recipient
  did not send: amavis's bounce killer (:mod:`scanner.checks.bounce_killer`).

Both weigh less the older that correspondence is: the hit's factor is
``2 ** (-age / halflife)``, as amavis's ``$penpals_halflife`` works. The hits belong to
one recipient each (``Hit.recipient``), so the other recipients of the same message
are not affected. Off by default: it needs the site's outgoing mail to pass the filter
and a database file the workers can write. Trouble with the database never defers
mail: the check logs it and gives no bonus (nor ``BOUNCE_KILLED``).

With a PostgreSQL database (several filter hosts sharing one memory,
:mod:`scanner.penpals_pg`) the store's calls run in a thread of their own
(:mod:`scanner.penpals_thread`): a message waits for its look-ups at most ``timeout``
seconds (then: database trouble, as above), and a delivered message is recorded in
that thread without waiting, so a database that is down or slow neither holds up its
reply nor turns it into a deferral.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from functools import partial
from typing import ClassVar

from scanner.checks.base import CheckContext
from scanner.checks.bounce_killer import bounce_hits
from scanner.config.schema import opt
from scanner.errors import ConfigError
from scanner.penpals_store import PenPalsUnavailable, Store, normalise, open_store
from scanner.penpals_thread import MAX_PENDING, StoreThread
from scanner.policy.effective import bank_names, sender_is_local
from scanner.task import Hit, Task
from scanner.throttle import LogThrottle

log = logging.getLogger("scanner.penpals")

DAY = 86400.0
RECORDED = frozenset({"CLEAN", "BAD-HEADER", "OVERSIZED"})
"""Categories of outgoing mail that is remembered (not spam, viruses, banned files)."""
_MSGID = re.compile(r"<([^<>\s]{1,250})>")
STORE_ERRORS = (sqlite3.Error, OSError, PenPalsUnavailable)


@dataclass(frozen=True, slots=True)
class PenPalsSettings:
    """Settings of the pen pals check ([checks.settings.penpals])."""

    database: str = opt("/var/lib/scanner/penpals.sqlite",
                        "SQLite file shared by the workers (created if missing), or a "
                        "'postgresql://user@host/db' URL several filter hosts share "
                        "(tables created if missing; needs psycopg)")
    halflife_days: float = opt(7.0, "the bonus halves with every this many days since our "
                               "user wrote (amavis's $penpals_halflife)", min=0.01)
    max_age_days: float = opt(60.0, "correspondence older than this is forgotten", min=1.0)
    record_banks: tuple[str, ...] = opt(
        ["ORIGINATING"], "policy banks whose mail counts as written by our users "
        "(the listener's bank, or MYNETS)")
    timeout: float = opt(2.0, "PostgreSQL only: seconds a message waits for its look-ups, "
                         "and the bound of each connection (at least 2 s) and statement; "
                         "slower counts as database trouble (no bonus, mail not held up)",
                         min=0.1)


class PenPals:
    """Record outgoing mail; give incoming replies and correspondents a bonus."""

    name: ClassVar[str] = "penpals"
    description: ClassVar[str] = "Replies to and mail from people our users wrote to"
    symbols: ClassVar[dict[str, str]] = {
        "PENPALS_REPLY": "a reply to a message this recipient sent",
        "PENPALS_KNOWN": "the recipient wrote to this sender lately",
        "BOUNCE_KILLED": "a bounce of a message this recipient did not send (backscatter)",
    }
    default_enabled: ClassVar[bool] = False
    kind: ClassVar[str] = "spam"
    Settings: ClassVar[type] = PenPalsSettings

    def __init__(self, settings: PenPalsSettings, context: CheckContext) -> None:
        self._s = settings
        self._config = context.config
        self._store: Store = open_store(settings.database, settings.max_age_days * DAY,
                                        settings.timeout)
        self._thread = StoreThread() if self._store.threaded else None
        if self._thread is not None and settings.timeout >= context.config.checks.timeout:
            # the check's own deadline would come first: PENPALS_FAIL, by default a 451
            raise ConfigError(f"'checks.settings.penpals.timeout' = {settings.timeout:g} "
                              "must be below 'checks.timeout' "
                              f"({context.config.checks.timeout:g}): a slow database must "
                              "not make the check fail")
        self._throttle = LogThrottle(60.0)
        self._throttle_lock = threading.Lock()  # reports come from the store's thread too

    async def run(self, task: Task) -> Iterable[Hit]:
        delimiter = self._config.policy.recipient_delimiter
        sender = normalise(task.envelope.sender, delimiter) if task.envelope.sender else ""
        if self._outgoing(task):
            return []  # remembered in after_delivery, once it has gone out
        try:
            if self._thread is None:
                return self._look_up(task, sender, delimiter)
            return await self._thread.call(self._s.timeout, self._look_up, task, sender,
                                           delimiter)
        except TimeoutError:
            self._report(f"no answer within {self._s.timeout:g} s")
        except STORE_ERRORS as exc:
            self._report(exc)
        return []

    def _look_up(self, task: Task, sender: str, delimiter: str) -> list[Hit]:
        hits = bounce_hits(task, self._store, self._config.policy)
        if sender and self._claims_local(task):
            log.debug("(%s) penpals: local sender from outside, ignored: %s", task.log_id,
                      task.envelope.sender)
        elif sender:  # bounces and notices have nobody to correspond with
            hits += self._incoming(task, sender, delimiter)
        return hits

    def _claims_local(self, task: Task) -> bool:
        """Mail from outside whose envelope sender is one of our own addresses: anyone
        can forge that, and our users' mail to each other is recorded too, so it gets
        no pen pals aid (amavis: "no bonus to unauthent. senders from outside claiming
        a local domain"). Local: a recipient table's ``local``, else ``local_domains``
        (none set: nobody is, as in amavis)."""
        return sender_is_local(self._config.policy, task.envelope.sender)

    def after_delivery(self, task: Task, passed: list[str]) -> None:
        """Outgoing mail the next hop took for ``passed`` recipients: remember them,
        unless the message was judged spam or worse (a hijacked account's spam run must
        not make its victims pen pals)."""
        delimiter = self._config.policy.recipient_delimiter
        sender = normalise(task.envelope.sender, delimiter) if task.envelope.sender else ""
        if not sender or not self._outgoing(task):
            return
        if any(task.verdicts[a].category not in RECORDED for a in passed):
            return
        record = partial(self._record, sender, [normalise(a, delimiter) for a in passed],
                         _message_id(task.message), time.time())
        if self._thread is None:
            record()
        elif not self._thread.submit(record):
            self._report(f"{MAX_PENDING} recordings wait for the database; this message "
                         "is not remembered")

    def _record(self, sender: str, remotes: list[str], message_id: str | None,
                now: float) -> None:
        try:
            self._store.record(sender, remotes, message_id, now)
        except STORE_ERRORS as exc:
            self._report(exc)

    def _report(self, exc: Exception | str) -> None:
        with self._throttle_lock:
            held = self._throttle.due("db")
        if held is not None:
            log.warning("penpals: %s: %s; no pen pals memory meanwhile (mail is not held "
                        "up)%s", self._store.location, exc,
                        f" ({held} more since the last report)" if held else "")

    async def probe(self) -> str | None:
        """At start-up (``scanner serve``, ``scanner config check``): whether the
        PostgreSQL database answers (its tables are created if missing)."""
        if self._thread is None:
            return None
        try:
            await self._thread.call(self._s.timeout, self._store.probe)
        except TimeoutError:
            return f"{self._store.location}: no answer within {self._s.timeout:g} s"
        except STORE_ERRORS as exc:
            return (f"{self._store.location}: {exc}; no pen pals memory until it answers "
                    "(mail is not held up)")
        return None

    def _outgoing(self, task: Task) -> bool:
        banks = bank_names(self._config, task.policy_bank, task.client.addr)
        return any(b in self._s.record_banks for b in banks)

    def _incoming(self, task: Task, sender: str, delimiter: str) -> list[Hit]:
        referenced = _referenced(task.message)
        now = time.time()
        hits = []
        for rcpt in task.envelope.recipients:
            found = self._store.lookup(normalise(rcpt.address, delimiter), sender,
                                       referenced, now)
            if found.replied_at is not None:
                hits.append(self._hit("PENPALS_REPLY", now - found.replied_at, rcpt.address))
            elif found.wrote_at is not None:
                hits.append(self._hit("PENPALS_KNOWN", now - found.wrote_at, rcpt.address))
        return hits

    def _hit(self, symbol: str, age: float, recipient: str) -> Hit:
        age = max(0.0, age)
        factor = round(2.0 ** (-age / (self._s.halflife_days * DAY)), 3)
        return Hit(symbol, factor=factor, options=(interval(age),), recipient=recipient)

    def close(self) -> None:
        if self._thread is None:
            self._store.close()
        else:  # after the recordings still waiting
            self._thread.close(self._store.close, self._s.timeout)


def interval(seconds: float) -> str:
    """A time interval as amavis writes it (Amavis::Util format_time_interval, in its
    X-Amavis-PenPals header): ``D H:MM:SS``, e.g. ``3 4:05:06``."""
    days, rest = divmod(int(seconds + 0.5), int(DAY))
    hours, rest = divmod(rest, 3600)
    return f"{days} {hours}:{rest // 60:02d}:{rest % 60:02d}"


def _message_id(msg: Message | None) -> str | None:
    if msg is None:
        return None
    found = _MSGID.findall(str(msg.get("Message-ID", "") or ""))
    return found[0] if found else None


def _referenced(msg: Message | None) -> list[str]:
    """Message-IDs named by In-Reply-To and References (the newest last)."""
    if msg is None:
        return []
    text = " ".join(str(msg.get(h, "") or "") for h in ("References", "In-Reply-To"))
    return _MSGID.findall(text[:20000])

"""What one message writes into amavis's SQL log: its msgs row and msgrcpt rows.

Filled as amavis fills them (``Amavis::Out::SQL::Log``; README.sql-pg of amavisd-new):

* ``content`` is a category letter: V virus, B banned, U unchecked, S spam, Y spammy
  (tag2), H bad header, O oversized, T a next hop's refusal (MTA-BLOCKED), C clean; the
  message's is the log line's category, a recipient's his verdict's.
* ``ds`` (delivery status) per recipient: P passed, R rejected, B bounced (a DSN went
  to the sender), D discarded (a bounce whose DSN was suppressed too), T deferred.
* ``dsn_sent``: Y when a DSN was sent, q when one was suppressed, else N.
* ``spam_level`` is the message's score without per-recipient points (amavis: "no
  boosts"), ``bspam_level`` a recipient's own; NULL where spam was not checked.
* Addresses go into ``maddr`` once each, the local part lower-cased (amavis's
  ``localpart_is_case_sensitive`` is off by default), the domain in lower-case A-label
  form, with their domain reversed for sorting (``com.example.mail``); the null
  sender is the empty address.
* Text columns are varchar(255): values are cut to 255 characters and NUL characters
  (which PostgreSQL's text cannot hold) dropped. The Message-ID and addresses are
  7-bit; other octets become ``?`` as amavis writes them unless the column is binary.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from scanner.idn import fold_domain, fold_localpart

TEXT_MAX = 255
CONTENT = {"VIRUS": "V", "BANNED": "B", "UNCHECKED": "U", "SPAM": "S", "SPAMMY": "Y",
           "BAD-HEADER": "H", "OVERSIZED": "O", "MTA-BLOCKED": "T", "CLEAN": "C"}
"""amavis's content type letter of each category."""
DELIVERY_STATUS = (("Relayed", "P"), ("Accepted", "P"), ("Rejected", "R"),
                   ("Bounced", "B"), ("NoBounce", "D"), ("Discarded", "D"),
                   ("TempFailed", "T"))
"""The log line's status words (direction left off) and amavis's ``ds`` letters."""


@dataclass(frozen=True, slots=True)
class Address:
    """A ``maddr`` row's values."""

    email: str
    domain: str


@dataclass(frozen=True, slots=True)
class RecipientRow:
    """One ``msgrcpt`` row, its ``rid`` as an :class:`Address`."""

    address: Address
    is_local: bool
    content: str
    ds: str
    blocklisted: bool
    allowlisted: bool
    bspam_level: float | None
    smtp_resp: str


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One ``msgs`` row, its ``sid`` as an :class:`Address`, with its recipients' rows.

    ``quarantine_file``: the held copy's path when its text goes into the quarantine
    table too (``[sql_log] quarantine_text``); read when the row is written."""

    partition_tag: int
    mail_id: str
    secret_id: str
    am_id: str
    time_num: int
    sender: Address
    policy: str
    client_addr: str
    size: int
    originating: bool
    content: str
    quar_type: str
    quar_loc: str
    dsn_sent: str
    spam_level: float | None
    message_id: str
    from_addr: str
    subject: str
    host: str
    recipients: tuple[RecipientRow, ...]
    quarantine_file: str | None = None

    @property
    def time_iso(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time_num, dt.UTC)


def address(addr: str) -> Address:
    """The ``maddr`` values of an envelope address ('' for the null sender)."""
    if addr in ("", "<>"):
        return Address("", "")
    local, at, domain = addr.rpartition("@")
    if not at:
        local, domain = addr, ""
    domain = fold_domain(domain).strip(".")
    email = text(f"{fold_localpart(local)}@{domain}" if at else fold_localpart(local))
    return Address(email, text(".".join(reversed(domain.split("."))) if domain else ""))


def text(value: str, limit: int = TEXT_MAX) -> str:
    """``value`` for a varchar column: no NUL, at most ``limit`` characters."""
    return value.replace("\x00", "")[:limit]


def seven_bit(value: str) -> str:
    """``value`` with every character outside printable ASCII as ``?`` (amavis's way
    with addresses for a character column)."""
    return "".join(c if " " <= c <= "~" else "?" for c in value)


def content_letter(category: str) -> str:
    """amavis's letter for a category ('C' for one it has none for)."""
    return CONTENT.get(category.upper(), "C")


def delivery_status(status: str) -> str:
    """amavis's ``ds`` letter for a recipient's log status (``RelayedInbound``...)."""
    for word, letter in DELIVERY_STATUS:
        if status.startswith(word):
            return letter
    return "T" if not status else "P"


def dsn_sent(statuses: list[str]) -> str:
    """Y when one of ``statuses`` is a bounce that sent a DSN, q when one was
    suppressed (amavis: quenched), else N."""
    if any(s.startswith("Bounced") for s in statuses):
        return "Y"
    return "q" if any(s.startswith("NoBounce") for s in statuses) else "N"


def partition_tag(fixed: int, by_week: bool, arrived: float) -> int:
    """The ``partition_tag``: ``fixed``, or the ISO 8601 week of ``arrived`` (UTC)."""
    if not by_week:
        return fixed
    return dt.datetime.fromtimestamp(arrived, dt.UTC).isocalendar().week

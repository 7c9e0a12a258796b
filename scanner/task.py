"""Per-message data that flows through the pipeline: envelope, client, hits, verdicts.

Everything here is plain data. Behaviour lives in the pipeline stages; a stage reads
what earlier stages recorded on the :class:`Task` and adds its own findings.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What we know about the SMTP client that handed the message to Postfix.

    Filled from XFORWARD when Postfix sends it; ``None`` means "not known"
    (Postfix's ``[UNAVAILABLE]``).
    """

    addr: str | None = None
    name: str | None = None
    port: str | None = None
    helo: str | None = None
    proto: str | None = None
    ident: str | None = None
    source: str | None = None

    def as_xforward(self) -> dict[str, str]:
        """The XFORWARD attributes to pass on to the next hop (unknown -> [UNAVAILABLE])."""
        addr = self.addr
        if addr is not None and ":" in addr and not addr.upper().startswith("IPV6:"):
            addr = "IPV6:" + addr  # Postfix's smtpd takes IPv6 only in this RFC 5321 form
        values = {
            "NAME": self.name,
            "ADDR": addr,
            "PORT": self.port,
            "PROTO": self.proto,
            "HELO": self.helo,
            "IDENT": self.ident,
            "SOURCE": self.source,
        }
        return {k: ("[UNAVAILABLE]" if v is None else v) for k, v in values.items()}


@dataclass(frozen=True, slots=True)
class Recipient:
    """One envelope recipient with its ESMTP RCPT parameters, exactly as received."""

    address: str
    params: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope of one transaction, parameters kept verbatim (case included)."""

    sender: str
    recipients: tuple[Recipient, ...]
    mail_params: tuple[tuple[str, str | None], ...] = ()
    smtputf8: bool = False
    body_8bit: bool = False


@dataclass(frozen=True, slots=True)
class Hit:
    """A named symbol raised by a check; its score is ``weight(symbol) * factor``.

    ``recipient`` set: the hit counts for that envelope recipient only (e.g. pen pals)."""

    symbol: str
    factor: float = 1.0
    options: tuple[str, ...] = ()
    part: str | None = None
    source: str = ""
    recipient: str | None = None


def virus_names(hits: Iterable[Hit]) -> list[str]:
    """The virus names the hits report (options of ``*_VIRUS`` symbols), sorted, once each."""
    return sorted({o for h in hits if h.symbol.endswith("_VIRUS") for o in h.options})


def banned_parts(hits: Iterable[Hit]) -> list[str]:
    """The part descriptions (``P=p004,L=1/2,T=exe-ms,N=x.exe``) of ``BANNED_FILE`` hits,
    in order, once each."""
    return list(dict.fromkeys(h.part for h in hits if h.symbol == "BANNED_FILE" and h.part))


class Destiny(enum.Enum):
    """What happens to the message for one recipient (amavis's D_* destinies)."""

    PASS = "PASS"
    DISCARD = "DISCARD"
    BOUNCE = "BOUNCE"
    REJECT = "REJECT"
    TEMPFAIL = "TEMPFAIL"


@dataclass(slots=True)
class Verdict:
    """The policy's decision for one recipient.

    ``hits`` are the hits that count for this recipient (bypassed checks left out, sender
    list symbols added); ``policy`` is the recipient's effective policy.
    """

    category: str
    destiny: Destiny
    score: float
    reason: str = ""
    quarantine: bool = False
    lover: bool = False
    spam_scanned: bool = True
    hits: list[Hit] = field(default_factory=list)
    policy: Any = None
    categories: tuple[str, ...] = ()
    """Every category the message falls in for this recipient, highest first;
    ``category`` is the one that blocks it, or the highest when it passes."""


@dataclass(slots=True)
class DeliveryResult:
    """The next hop's answer for one recipient: SMTP code, enhanced code and text."""

    code: int
    text: str
    via: str = ""

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code >= 500


@dataclass(slots=True)
class Task:
    """All per-message state. Created by the SMTP layer, filled by the pipeline stages."""

    mail_id: str
    envelope: Envelope
    raw: bytes
    client: ClientInfo = field(default_factory=ClientInfo)
    policy_bank: str = ""
    policy_banks: tuple[str, ...] = ()  # every bank in force (MYNETS, the listener's)
    listener: str = ""
    peer: tuple[str, int] | None = None
    helo: str | None = None
    log_id: str = ""
    queue_id: str | None = None
    started: float = field(default_factory=time.monotonic)
    # the event loop's clock time by which the message must be answered (the
    # processor's server.message_timeout); None: only each stage's own limit applies
    deadline: float | None = None
    arrived: float = field(default_factory=time.time)  # wall clock: a DSN's Arrival-Date
    message: Message | None = None
    parts: list[Any] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    add_headers: list[tuple[str, str]] = field(default_factory=list)
    # byte ranges of header fields of ``raw`` that delivered copies leave out
    drop_fields: list[tuple[int, int]] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    results: dict[str, DeliveryResult] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    digest: bytes = b""  # content digest (scanner.serve.scoreboard.message_digest)
    # "selector:domain" of the valid DKIM signatures found, and of those we added: the
    # log line's dkim_sd= and dkim_new= fields, as amavis writes them
    dkim_valid: list[str] = field(default_factory=list)
    dkim_new: list[str] = field(default_factory=list)
    # the Received chain as scanner.auth.received walked it, by the networks it used
    relay_chains: dict[tuple, Any] = field(default_factory=dict)
    # originator address -> local, as the policy sources and recipient tables say it
    # (the policy stage fills it when a disclaimer may be added; absent: local_domains)
    originator_local: dict[str, bool] = field(default_factory=dict)
    # the classifier's autolearn decision (scanner.ml.autolearn): X-Spam-Status's
    # autolearn= word; "disabled" unless [checks.settings.bayes] autolearn is on
    autolearn: str = "disabled"
    # what a check keeps of a message for a later stage, by check name (the classifier
    # keeps the features it scored, to queue them for autolearning)
    scratch: dict[str, Any] = field(default_factory=dict)

    def add_hit(self, hit: Hit) -> None:
        self.hits.append(hit)

    def symbols(self) -> set[str]:
        return {h.symbol for h in self.hits}

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

"""What the quarantine knows about one held message, its file name, and its error type."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from scanner.errors import ScannerError
from scanner.idn import fold_address

MAIL_ID_RE = re.compile(r"^[A-Za-z0-9_-]{12}$")

# amavis's file name prefixes where it has one, the category in lower case otherwise
_PREFIXES = {
    "VIRUS": "virus",
    "BANNED": "banned",
    "SPAM": "spam",
    "SPAMMY": "spammy",
    "BAD-HEADER": "badh",
    "UNCHECKED": "unchecked",
    "OVERSIZED": "oversized",
    "CLEAN": "clean",
}


class QuarantineError(ScannerError):
    """A quarantine operation failed; the message says what (id, file, index, next hop)."""


class IndexUnavailable(QuarantineError):
    """The index could not be used (busy past the timeout, unreachable, unreadable):
    nothing about the message is wrong; the same request may succeed later."""


class UnknownMailId(QuarantineError):
    """No index row for this mail_id."""


class AlreadyReleased(QuarantineError):
    """The message was released before, is being released, or an earlier release broke off."""


class BadSecret(QuarantineError):
    """The secret_id given with a release request does not match."""


def category_prefix(category: str) -> str:
    """``SPAM`` -> ``spam``, ``BAD-HEADER`` -> ``badh``; safe for a file name."""
    known = _PREFIXES.get(category.upper())
    if known:
        return known
    cleaned = re.sub(r"[^a-z0-9]+", "", category.lower())
    return cleaned or "other"


def relative_path(mail_id: str, category: str, subdir_levels: int) -> str:
    """``7vykgLjHGVrk``, ``SPAM``, 1 -> ``7/spam-7vykgLjHGVrk.gz`` (amavis's layout)."""
    dirs = [mail_id[i] for i in range(subdir_levels)]
    return "/".join([*dirs, f"{category_prefix(category)}-{mail_id}.gz"])


def check_mail_id(mail_id: str) -> str:
    """The id unchanged if it has the shape of a mail_id; QuarantineError otherwise."""
    if not MAIL_ID_RE.match(mail_id or ""):
        raise UnknownMailId(f"{mail_id!r} is not a mail_id (12 characters A-Z a-z 0-9 - _)")
    return mail_id


def mail_id_from(text: str) -> str:
    """The mail_id named by ``text``: the id itself, or the file name or path of its
    quarantine file as the log line and amavisd-release show it (``7/spam-7vykgLjHGVrk.gz``,
    also with amavis's ``[partition]`` suffix); ``text`` unchanged otherwise."""
    value = text.strip()
    if MAIL_ID_RE.match(value):
        return value
    name = value.split("[", 1)[0].rsplit("/", 1)[-1]
    stem = name[:-3] if name.endswith(".gz") else name
    if MAIL_ID_RE.match(stem):
        return stem
    if len(stem) > 13 and stem[-13] == "-" and MAIL_ID_RE.match(stem[-12:]):
        return stem[-12:]
    return text


@dataclass(slots=True)
class QuarantineRecord:
    """One index row. Times are Unix seconds; ``path`` is absolute, ``relative_path``
    is below the quarantine directory (the form logged and used by amavisd-release)."""

    mail_id: str
    secret_id: str
    stored_at: float
    sender: str
    recipients: list[str]
    category: str
    score: float | None
    symbols: list[str]
    size: int
    subject: str
    message_id: str
    client_addr: str | None
    policy_bank: str
    relative_path: str
    path: str
    host: str = ""
    release_started: float | None = None
    released_by: str | None = None
    released_at: float | None = None
    released_to: list[str] = field(default_factory=list)
    release_result: list[str] = field(default_factory=list)
    held_for: list[str] | None = None
    """The recipients (of ``recipients``) who did not get the message when it was
    stored: their destiny was discard, reject or bounce (amavis's
    ``X-Envelope-To-Blocked``); the others' copies went on (a lover's, or kept under
    ``quarantine_passed``). None: not known (stored before 2026-12-07)."""

    @property
    def state(self) -> str:
        """held, releasing (or interrupted), released."""
        if self.released_at is not None:
            return "released"
        return "releasing" if self.release_started is not None else "held"

    def release_targets(self) -> list[str]:
        """Whom a release sends the message to when nobody is named: the recipients it
        was held for, as amavisd-release does; every recipient when none was held (a
        copy kept of delivered mail) or that is not known."""
        return list(self.held_for or self.recipients)

    def got_it(self, address: str) -> bool | None:
        """Whether the recipient ``address`` got the message when it was stored
        (compared as policy lookups compare addresses: the domain in either IDN
        spelling and any case, the local part ASCII-folded); None when that is not
        known."""
        if self.held_for is None:
            return None
        return fold_address(address) not in {fold_address(a) for a in self.held_for}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state
        return data

"""Virus names that are spam, not viruses (amavis's ``@virus_name_to_spam_score_maps``).

clamd reports more than viruses under the word FOUND: its own phishing heuristics
(``Heuristics.Phishing.Email.SpoofedDomain``, ``Heuristics.Phishing.Email.SSL-Spoof``,
on by default in Debian's clamd.conf with ``PhishingScanURLs``), structured-data alerts,
and the spam and phishing signatures of third-party databases (Sanesecurity, SecuriteInfo,
MalwarePatrol) that sites add with clamav-unofficial-sigs. amavis turns a name that
matches its table into a small spam score (0.1 points, a test in ``X-Spam-Status``)
instead of a virus, so a newsletter whose link text names another host than its link is
not discarded as INFECTED. The table is amavis 2.13's default (``Amavis/Conf.pm``), in
its order: the first matching entry decides; an entry with ``virus = true`` keeps the
name a virus (the exceptions amavis writes as ``undef``). Perl's ``\\z`` is ``\\Z``
here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from scanner.config.schema import opt


@dataclass(frozen=True, slots=True)
class SpamName:
    """One entry of ``virus_name_to_spam_score``."""

    pattern: str = opt("", "regular expression searched for in the name clamd reports")
    score: float = opt(0.1, "spam points of a matching name (symbol CLAMAV_SPAM)")
    virus: bool = opt(False, "a matching name stays a virus (an exception to later "
                      "entries)")


def _spam(pattern: str, score: float = 0.1) -> SpamName:
    return SpamName(pattern, score)


def _virus(pattern: str) -> SpamName:
    return SpamName(pattern, 0.0, True)


AMAVIS_SPAM_NAMES: list[SpamName] = [
    _spam(r"^Structured\.(SSN|CreditCardNumber)\b"),
    _spam(r"^(Heuristics\.)?Phishing\."),
    _spam(r"^(Email|HTML)\.Phishing\.(?!.*Sanesecurity)"),
    _virus(r"^Sanesecurity\.(Malware|Rogue|Trojan)\."),
    _spam(r"^Sanesecurity\.Foxhole\.Zip_exe"),
    _spam(r"^Sanesecurity\.Foxhole\.Zip_bat"),
    _spam(r"^Sanesecurity\.Foxhole\.Mail_gz"),
    _spam(r"^Sanesecurity\.Foxhole\.Mail_ace"),
    _spam(r"^Sanesecurity\.Foxhole\.Mail_tar", 0.0),
    _virus(r"^Sanesecurity\.Foxhole\."),
    _spam(r"^Sanesecurity\."),
    _spam(r"^Sanesecurity_PhishBar_", 0.0),
    _spam(r"^Sanesecurity.TestSig_", 0.0),
    _spam(r"^Email\.Spam\.Bounce(\.[^., ]*)*\.Sanesecurity\.", 0.0),
    _spam(r"^Email\.Spammail\b"),
    _spam(r"^MSRBL-(Images|SPAM)\b"),
    _spam(r"^VX\.Honeypot-SecuriteInfo\.com\.Joke"),
    _spam(r"^VX\.not-virus_(Hoax|Joke)\..*-SecuriteInfo\.com(\.|\Z)"),
    _spam(r"^Email\.Spam.*-SecuriteInfo\.com(\.|\Z)"),
    _spam(r"^Safebrowsing\."),
    _spam(r"^winnow\.(phish|spam)\."),
    _spam(r"^INetMsg\.SpamDomain"),
    _spam(r"^Doppelstern\.(Spam|Scam|Phishing|Junk|Lott|Loan)"),
    _spam(r"^Bofhland\.Phishing"),
    _spam(r"^ScamNailer\."),
    _spam(r"^HTML/Bankish"),
    _spam(r"^PORCUPINE_JUNK"),
    _spam(r"^PORCUPINE_PHISHING"),
    _spam(r"^Porcupine\.Junk"),
    _spam(r"^PhishTank\.Phishing\."),
    _virus(r"-SecuriteInfo\.com(\.|\Z)"),
    _spam(r"^MBL_NA\.UNOFFICIAL"),
    _virus(r"^MBL_"),
]
"""amavis 2.13's ``@virus_name_to_spam_score_maps``, in its order."""


class NameTable:
    """Decide, name by name, whether clamd reported a virus or spam."""

    def __init__(self, entries: Iterable[SpamName]) -> None:
        self._entries: list[tuple[re.Pattern[str], float | None]] = []
        for i, entry in enumerate(entries):
            try:
                compiled = re.compile(entry.pattern)
            except re.error as exc:
                raise ValueError(f"[{i}] pattern {entry.pattern!r}: {exc}") from None
            if not entry.pattern:
                raise ValueError(f"[{i}] pattern is empty")
            self._entries.append((compiled, None if entry.virus else entry.score))

    def spam_score(self, name: str) -> float | None:
        """The spam points of ``name``, or None when it is a virus (no entry matches, or
        the first matching one says ``virus = true``)."""
        for pattern, score in self._entries:
            if pattern.search(name):
                return score
        return None

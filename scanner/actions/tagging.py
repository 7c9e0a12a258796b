"""What each passed recipient's copy gets: spam headers, subject tag, alerts, extension.

amavis-compatible: X-Spam-Flag/Score/Level/Status from tag_level on (only for local
recipients and only when spam checks ran for them), X-Spam-Flag YES, the subject tag
and the address extension from tag2_level on, X-Virus-Scanned when a virus scanner
ran, an ``X-Amavis-Alert`` for each of VIRUS, BANNED and BAD-HEADER the passed copy holds
(a lover's, or a category whose destiny is pass), local or not, as amavis adds them. For the same
recipients the spam headers the message arrived with are left out
(``remove_existing_spam_headers``, as amavis does), whatever the score: an
``X-Spam-Flag: NO`` or ``X-Spam-Status: No`` the sender wrote must not reach a mail
client or Sieve rule that trusts those headers.
"""

from __future__ import annotations

import re
import textwrap
import time
from dataclasses import dataclass
from email.utils import formatdate

from scanner.actions.defang import warning_lines
from scanner.actions.disclaimer import disclaimer_for
from scanner.actions.headers import encode_words, fold
from scanner.addresses import split_localpart
from scanner.config.policy import PolicyConfig
from scanner.headerfields import named
from scanner.policy.effective import recipient_is_local
from scanner.scores import ScoreTable
from scanner.task import Destiny, Task, Verdict, banned_parts, virus_names

MAX_LEVEL_STARS = 64
PENPALS = ("PENPALS_REPLY", "PENPALS_KNOWN")
"""Pen pals symbols; the age in their option becomes amavis's X-Amavis-PenPals."""
LONGEST_WORD = 900  # characters; a longer word of an added text field is cut, with "..."
SPAM_HEADER_NAMES = ("Flag", "Score", "Level", "Status", "Report", "Tests", "Checker-Version")


@dataclass(frozen=True, slots=True)
class Edits:
    """Header lines to add, a Subject prefix, the (maybe extended) recipient address and
    the prefix of arriving spam headers to leave out ('' = keep them)."""

    headers: tuple[tuple[str, str], ...]
    subject_prefix: str
    address: str
    drop_spam_headers: str = ""
    defang: tuple[str, ...] = ()
    """The warning of a defanged copy (:mod:`scanner.actions.defang`); () = as it is."""
    disclaimer: tuple[str, ...] = ()
    """The disclaimer files (text, HTML) of the copy (:mod:`scanner.actions.disclaimer`);
    () = none."""


def edits_for(task: Task, address: str, verdict: Verdict, scores: ScoreTable,
              hostname: str, virus_scanned: bool) -> Edits:
    policy: PolicyConfig = verdict.policy
    headers: list[tuple[str, str]] = []
    if virus_scanned and policy.virus_scanned_header and not policy.bypass_virus_checks:
        headers.append((policy.virus_scanned_header, text_field(
            policy.virus_scanned_header,
            policy.virus_scanned_value.replace("{hostname}", hostname))))
    local = recipient_is_local(policy, address)
    spammy = verdict.spam_scanned and verdict.score >= policy.tag2_level
    if local and policy.spam_headers and verdict.spam_scanned \
            and verdict.score >= policy.tag_level:
        headers += spam_headers(verdict, policy, scores, task.autolearn)
    for alert in _alerts(verdict, scores):
        headers.append(("X-Amavis-Alert", text_field("X-Amavis-Alert", alert)))
    penpal = next((h for h in verdict.hits if h.symbol in PENPALS and h.options), None)
    if local and penpal is not None:  # amavis: the age of the correspondence
        headers.append(("X-Amavis-PenPals", f"age {penpal.options[0]}"))
    prefix = _subject_tag(task, verdict, hostname) if local else ""
    new_address = address
    extension = _extension(verdict, spammy) if local else ""
    if extension:
        new_address = extend(address, extension, policy.recipient_delimiter)
    drop = (policy.header_prefix if local and verdict.spam_scanned
            and policy.remove_existing_spam_headers and policy.header_prefix else "")
    warning = (warning_lines(verdict, policy, scores, _spam_summary(verdict, policy, scores))
               if local and policy.defang and verdict.destiny is Destiny.PASS else ())
    return Edits(tuple(headers), prefix, new_address, drop, warning,
                 disclaimer_for(task, address, verdict, bool(warning)))


def _spam_summary(verdict: Verdict, policy: PolicyConfig, scores: ScoreTable) -> str:
    """SpamAssassin's report summary (amavis's spam_summary) for a defanged copy."""
    return (f"Content analysis details:   ({verdict.score:.1f} points, "
            f"{policy.tag2_level:.1f} required)\r\n\t\r\n\t"
            + spam_report(verdict, scores))


def _subject_tag(task: Task, verdict: Verdict, hostname: str) -> str:
    """amavis's %subject_tag_maps_by_ccat: the first non-empty tag of the categories
    present, highest first (VIRUS, UNCHECKED, spam from tag2_level, from tag_level),
    its macros expanded."""
    policy: PolicyConfig = verdict.policy
    present = verdict.categories
    scanned = verdict.spam_scanned
    tags = (policy.subject_tag_virus if "VIRUS" in present else "",
            policy.subject_tag_unchecked if "UNCHECKED" in present else "",
            policy.subject_tag2 if scanned and verdict.score >= policy.tag2_level else "",
            policy.subject_tag if scanned and verdict.score >= policy.tag_level else "")
    tag = next((t for t in tags if t), "")
    return _MACRO.sub(lambda m: _macro(m.group(1), task, verdict, hostname), tag) \
        if "_" in tag else tag


_MACRO = re.compile(r"_(SCORE|REQD|YESNO|YESNOCAPS|HOSTNAME|DATE|U|LOGID|MAILID|SUBJPREFIX)_")


def _macro(name: str, task: Task, verdict: Verdict, hostname: str) -> str:
    """The value of one of amavis's subject tag macros (the clock read only for the two
    that show it)."""
    if name == "DATE":
        return formatdate(time.time(), localtime=True)
    if name == "U":
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    policy: PolicyConfig = verdict.policy
    spam = verdict.spam_scanned and verdict.score >= policy.tag2_level
    return {"SCORE": _num(verdict.score), "REQD": _num(policy.tag2_level),
            "YESNO": "Yes" if spam else "No", "YESNOCAPS": "YES" if spam else "NO",
            "HOSTNAME": hostname, "LOGID": task.log_id, "MAILID": task.mail_id,
            "SUBJPREFIX": ""}[name]  # SpamAssassin's subjprefix: no such thing here


def _extension(verdict: Verdict, spammy: bool) -> str:
    """amavis's %addr_extension_maps_by_ccat: the extension of the highest category
    present among virus, banned, spam and bad header decides, even when it is empty."""
    policy: PolicyConfig = verdict.policy
    present = verdict.categories
    for found, extension in (("VIRUS" in present, policy.addr_extension_virus),
                             ("BANNED" in present, policy.addr_extension_banned),
                             (spammy, policy.addr_extension_spam),
                             ("BAD-HEADER" in present, policy.addr_extension_bad_header)):
        if found:
            return extension
    return ""


def text_field(name: str, text: str) -> str:
    """The value of an unstructured field we add, valid whatever ``text`` holds (a
    configured text, a file name, a Content-Type of any length): RFC 2047 encoded words
    when it is not ASCII, folded at spaces, no word over :data:`LONGEST_WORD`, so no
    line passes RFC 5322's 998 octets (amavis cuts such lines with "..." too)."""
    words = [w if len(w) <= LONGEST_WORD else w[:LONGEST_WORD - 3] + "..."
             for w in text.split(" ")]
    text = " ".join(words)
    if not text.isascii():
        text = encode_words(text).decode("ascii")
    return fold(name, text)


def spam_header_fields(raw: bytes, header_prefix: str) -> list[tuple[int, int]]:
    """Byte ranges of the header fields of ``raw`` named ``header_prefix`` + one of
    :data:`SPAM_HEADER_NAMES` (names compared without case)."""
    names = tuple(header_prefix + n for n in SPAM_HEADER_NAMES)
    return [(f.start, f.end) for f in named(raw, names)]


def spam_headers(verdict: Verdict, policy: PolicyConfig, scores: ScoreTable,
                 autolearn: str = "disabled") -> list[tuple[str, str]]:
    """The X-Spam-* fields; ``autolearn``: SpamAssassin's autolearn= word (the
    classifier's autolearn decision, :mod:`scanner.ml.autolearn`)."""
    p = policy.header_prefix
    spam = verdict.score >= policy.tag2_level
    tests = ", ".join(f"{sym}={_num(w)}" for sym, w in _tests(verdict, scores))
    status = (f"{'Yes' if spam else 'No'}, score={_num(verdict.score)} "
              f"tagged_above={_num(policy.tag_level)} required={_num(policy.tag2_level)} "
              f"tests=[{tests}] autolearn={autolearn}")
    headers = [
        (f"{p}Flag", "YES" if spam else "NO"),
        (f"{p}Score", f"{verdict.score:.3f}"),
        (f"{p}Level", "*" * max(0, min(MAX_LEVEL_STARS, int(verdict.score)))),
        (f"{p}Status", fold(f"{p}Status", status)),
    ]
    if spam and policy.spam_report:
        headers.append((f"{p}Report", spam_report(verdict, scores)))
    return headers


def spam_report(verdict: Verdict, scores: ScoreTable) -> str:
    """SpamAssassin's report layout: one ``* points SYMBOL description`` line per
    symbol, highest points first, descriptions wrapped under themselves."""
    lines: list[str] = []
    ranked = sorted(_tests(verdict, scores), key=lambda item: (-item[1], item[0]))
    for symbol, points in ranked:
        description = scores.get(symbol).description.encode("ascii", "replace").decode()
        head = f"* {points:5.1f} {symbol}"
        wrapped = textwrap.wrap(description, width=max(20, 74 - len(head))) or [""]
        lines.append(f"{head} {wrapped[0]}".rstrip())
        lines += [f"*{' ' * (len(head) - 1)} {more}" for more in wrapped[1:]]
    return "\r\n\t".join(lines) if lines else "(no symbols)"


def _tests(verdict: Verdict, scores: ScoreTable) -> list[tuple[str, float]]:
    out: dict[str, float] = {}
    for h in verdict.hits:
        weight = scores.get(h.symbol).weight * h.factor
        if weight:
            out[h.symbol] = out.get(h.symbol, 0.0) + weight
    return sorted(out.items())


def _num(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _alerts(verdict: Verdict, scores: ScoreTable) -> list[str]:
    present = verdict.categories or (verdict.category,)
    out = []
    if "VIRUS" in present:
        out.append(f"INFECTED, message contains virus: {', '.join(virus_names(verdict.hits))}")
    if "BANNED" in present:
        parts = banned_parts(verdict.hits)
        out.append(f"BANNED, message contains {parts[0] if parts else 'a banned part'}")
    if "BAD-HEADER" in present:
        bad = next((h for h in verdict.hits if scores.get(h.symbol).category == "BAD-HEADER"),
                   None)
        what = (", ".join(bad.options) or scores.get(bad.symbol).description) if bad else ""
        out.append(f"BAD HEADER SECTION, {what or 'malformed'}")
    return out


def extend(address: str, extension: str, delimiter: str) -> str:
    """``user@dom`` -> ``user+spam@dom``; an existing extension is replaced
    (``user+work@dom`` -> ``user+spam@dom``), as amavis's ``$replace_existing_extension``
    (on by default) does, so the delivery agent files it by ours. The first character of
    ``delimiter`` goes in; any of them starts an existing extension
    (:func:`scanner.addresses.split_localpart`); no delimiter, no extension (amavis)."""
    local, at, domain = address.rpartition("@")
    if not at or not delimiter:  # amavis: no delimiter, no extension
        return address
    return f"{split_localpart(local, delimiter)[0]}{delimiter[0]}{extension}@{domain}"

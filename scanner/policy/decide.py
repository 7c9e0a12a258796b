"""Per-recipient verdicts: which hits count, the score, the category and the destiny.

A hit made for one recipient (``Hit.recipient``, e.g. pen pals) counts for that one only.

Categories follow amavis's precedence. A recipient's bypass flags drop the hits of the
matching kind of check; allow/block sender lists add SENDER_ALLOWLISTED or
SENDER_BLOCKLISTED and ``sender_scores`` SENDER_SCORE, for the envelope sender or a From
address (amavis's white and black lists and @score_sender_maps). As amavis decides a
recipient's destiny, every category the message falls in for that recipient is looked
at, highest first, and the first one whose destiny is not ``pass`` and which the
recipient does not love blocks (so a virus lover still does not get a virus that is also
spam his spam destiny discards); with no blocking category the verdict's category is the
highest one found, and the mail is also kept in the quarantine when
``quarantine_passed`` lists that category (amavis quarantines by category whatever the
destiny; ``clean`` stands for mail of no category amavis quarantines on its own). A
BAD-HEADER bounce from the null sender or bulk mail passes instead (amavis: its DSN
would be suppressed and such headers are mostly harmless). Symbols flagged ``tempfail``
(e.g. CLAMAV_FAIL) defer the message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import getaddresses

from scanner.auth.psl import org_domain
from scanner.config.policy import PolicyConfig
from scanner.idn import fold_domain
from scanner.pipeline.parse import header_text
from scanner.policy.lookup import listed, lookup
from scanner.scores import ScoreTable
from scanner.task import Destiny, Hit, Task, Verdict

PRECEDENCE = ("VIRUS", "BANNED", "UNCHECKED", "SPAM", "SPAMMY", "BAD-HEADER", "OVERSIZED",
              "CLEAN")
CATEGORY_KEY = {"VIRUS": "virus", "BANNED": "banned", "UNCHECKED": "unchecked",
                "SPAM": "spam", "BAD-HEADER": "bad_header", "OVERSIZED": "oversized"}
DESTINY = {"pass": Destiny.PASS, "discard": Destiny.DISCARD, "bounce": Destiny.BOUNCE,
           "reject": Destiny.REJECT}
OWN_QUARANTINE = ("virus", "banned", "unchecked", "spam", "bad_header")
"""Categories amavis quarantines by their own $*_quarantine_method."""
ALLOW, BLOCK, SCORE = "SENDER_ALLOWLISTED", "SENDER_BLOCKLISTED", "SENDER_SCORE"
ALLOW_DKIM = "SENDER_ALLOWLISTED_DKIM"
KIND_OF_CATEGORY = {"VIRUS": "virus", "UNCHECKED": "virus", "BANNED": "banned",
                    "BAD-HEADER": "header"}


_LIST_FIELDS = ("List-Id", "List-Post", "List-Unsubscribe", "Mailing-List")
_LIST_SENDER = re.compile(r"^(?:[^@]+-(?:request|bounces|owner|admin)|owner-[^@]+)(?:@|$)",
                          re.IGNORECASE)
_LIST_AUTHOR = re.compile(r"^(?:[^@]+-(?:request|bounces|owner)|owner-[^@]+)(?:@|$)",
                          re.IGNORECASE)
_AUTO = re.compile(r"^(?:mailer-daemon|double-bounce|mailer|autoreply)(?:@|$)", re.IGNORECASE)
_BULK_AUTHOR = re.compile(r"^(?:[^@]+-relay|postmaster|uucp)(?:@|$)", re.IGNORECASE)
_PRECEDENCE = re.compile(r"^(?:list|bulk\b|junk\b)", re.IGNORECASE)
_AUTO_REPLY = re.compile(r"^auto.?reply\b", re.IGNORECASE)


def author_address(task: Task) -> str:
    """The first address of the From field (amavis's rfc2822_from[0]), or ''."""
    return (getaddresses([header_text(task.message, "From")]) or [("", "")])[0][1]


def is_auto(task: Task) -> bool:
    """amavis's ``is_auto``: an automatic message (``Precedence: auto_reply``,
    ``Auto-Submitted`` other than ``no``, the null sender, a mailer-daemon,
    double-bounce, mailer or autoreply sender or author)."""
    msg, sender = task.message, task.envelope.sender
    auto = None if msg is None else msg.get("Auto-Submitted")
    return bool(
        not sender or _AUTO_REPLY.match(header_text(msg, "Precedence"))
        or (auto is not None and re.sub(r"\([^)]*\)", "", str(auto)).strip().lower() != "no")
        or _AUTO.match(sender) or _AUTO.match(author_address(task)))


def is_bulk(task: Task) -> bool:
    """amavis's ``is_bulk``: mailing-list mail (a List-Id, List-Post, List-Unsubscribe or
    Mailing-List field; a ``-request``, ``-bounces``, ``-owner``, ``owner-`` sender or
    author), an auto-response (:func:`is_auto`) or bulk mail (``Precedence:
    list/bulk/junk``; a ``-relay``, postmaster or uucp author).
    No DSN goes to such mail (RFC 3834: no automatic answer to automatic mail)."""
    msg, sender, author = task.message, task.envelope.sender, author_address(task)
    return bool(
        is_auto(task)
        or (msg is not None and any(msg.get(f) is not None for f in _LIST_FIELDS))
        or _LIST_SENDER.match(sender) or _LIST_AUTHOR.match(author)
        or _PRECEDENCE.match(header_text(msg, "Precedence")) or _BULK_AUTHOR.match(author))


def hit_kind(hit: Hit, scores: ScoreTable, kinds: Mapping[str, str]) -> str:
    """virus, banned, header, spam or other: which bypass flag drops this hit."""
    if hit.source in kinds:
        return kinds[hit.source]
    category = scores.get(hit.symbol).category
    return KIND_OF_CATEGORY.get(category, "spam" if category == "" else "other")


def counted_hits(task: Task, policy: PolicyConfig, scores: ScoreTable,
                 kinds: Mapping[str, str], address: str = "") -> list[Hit]:
    """The hits that count for recipient ``address`` with ``policy``, plus sender-list
    symbols; hits made for another recipient are left out."""
    bypass = {"virus": policy.bypass_virus_checks, "banned": policy.bypass_banned_checks,
              "header": policy.bypass_header_checks, "spam": policy.bypass_spam_checks}
    hits = [h for h in task.hits if not bypass.get(hit_kind(h, scores, kinds), False)
            and (h.recipient is None or h.recipient.lower() == address.lower())]
    if not policy.bypass_spam_checks:
        hits += sender_list_hits(task, policy)
    return hits


def dkim_vouched(task: Task, authors: list[str], patterns: tuple[str, ...],
                 delimiter: str) -> str:
    """The first of the From ``authors`` on ``patterns`` that a valid DKIM signature of
    its own domain or of a parent domain in the same registered domain
    (``d=example.com`` for ``news.example.com``) vouches for, or ''. The signatures are
    those the auth check verified (``Task.dkim_valid``)."""
    if not patterns or not task.dkim_valid:
        return ""
    signers = {fold_domain(entry.rpartition(":")[2]) for entry in task.dkim_valid}
    for author in authors:
        if not listed(patterns, author, delimiter):
            continue
        domain = fold_domain(author.rpartition("@")[2])
        if any(_vouches(signer, domain) for signer in signers):
            return author
    return ""


def _vouches(signer: str, domain: str) -> bool:
    """A signature of ``signer`` speaks for ``domain``: the same domain, or a parent of
    it within the same registered domain (DMARC's relaxed alignment; a public suffix
    such as ``co.uk`` never vouches for the names under it)."""
    return signer == domain or (domain.endswith("." + signer)
                                and org_domain(signer) == org_domain(domain))


def from_addresses(task: Task) -> list[str]:
    """The addresses of the From field (amavis's rfc2822_from)."""
    return [a for _, a in getaddresses([header_text(task.message, "From")]) if "@" in a]


def sender_list_hits(task: Task, policy: PolicyConfig) -> list[Hit]:
    """The sender-list symbols, for the addresses amavis's white_black_list checks: the
    envelope sender ('' for the null sender), then each address of the From field.
    SENDER_ALLOWLISTED when any of them is on ``allow_senders``, else
    SENDER_ALLOWLISTED_DKIM (:func:`dkim_vouched`), else SENDER_BLOCKLISTED when one is
    on ``block_senders`` (amavis: a whitelisted sender wins); SENDER_SCORE with the
    points of ``sender_scores`` for the first of them that has non-zero points there
    (amavis's @score_sender_maps, a soft list)."""
    if not (policy.allow_senders or policy.block_senders or policy.sender_scores
            or policy.allow_senders_dkim):
        return []
    authors, delimiter = from_addresses(task), policy.recipient_delimiter
    senders = list(dict.fromkeys([task.envelope.sender, *authors]))
    hits = []
    if any(listed(policy.allow_senders, s, delimiter) for s in senders):
        hits.append(Hit(ALLOW, source="policy"))
    elif signed := dkim_vouched(task, authors, policy.allow_senders_dkim, delimiter):
        hits.append(Hit(ALLOW_DKIM, options=(signed,), source="policy"))
    elif any(listed(policy.block_senders, s, delimiter) for s in senders):
        hits.append(Hit(BLOCK, source="policy"))
    for sender in senders:
        points = (lookup(policy.sender_scores, sender, delimiter) if sender
                  else policy.sender_scores.get("<>"))
        if points:
            hits.append(Hit(SCORE, factor=points, options=(sender or "<>",), source="policy"))
            break
    return hits


def decide(task: Task, address: str, policy: PolicyConfig, scores: ScoreTable,
           kinds: Mapping[str, str]) -> Verdict:
    """The verdict for one recipient."""
    hits = counted_hits(task, policy, scores, kinds, address)
    score = round(sum(scores.get(h.symbol).weight * h.factor for h in hits), 3)
    found = {scores.get(h.symbol).category for h in hits} - {""}
    failed = [h for h in hits if h.symbol.endswith("_FAIL") and h.source in task.failed_checks]
    if failed and policy.on_check_failure == "unchecked":
        found.add("UNCHECKED")
    if not policy.bypass_spam_checks:
        if score >= policy.kill_level:
            found.add("SPAM")
        elif score >= policy.tag2_level:
            found.add("SPAMMY")
    if policy.oversized_size and len(task.raw) > policy.oversized_size:
        found.add("OVERSIZED")
    present = tuple(c for c in PRECEDENCE if c in found)
    category = present[0] if present else "CLEAN"
    tempfail = sorted({h.symbol for h in hits if scores.get(h.symbol).tempfail})
    if failed and policy.on_check_failure == "tempfail":
        tempfail = sorted(set(tempfail) | {h.symbol for h in failed})
    verdict = Verdict(category, Destiny.PASS, score, hits=hits, policy=policy,
                      spam_scanned=not policy.bypass_spam_checks, categories=present)
    if tempfail:
        verdict.destiny, verdict.reason = Destiny.TEMPFAIL, ",".join(tempfail)
        return verdict
    for cat in present:  # amavis: the first blocking category, highest first
        key = CATEGORY_KEY.get(cat)
        if key is None:
            continue
        destiny = DESTINY[getattr(policy, f"{key}_destiny")]
        if destiny is Destiny.PASS:
            continue
        if getattr(policy, f"{key}_lover"):
            verdict.lover = True
            continue
        if destiny is Destiny.BOUNCE and key == "bad_header" \
                and (not task.envelope.sender or is_bulk(task)):
            continue
        verdict.category, verdict.destiny = cat, destiny
        verdict.quarantine = key in policy.quarantine and _kept(verdict, key, policy)
        return verdict
    kept = [k for k in passed_keys(present) if k in policy.quarantine_passed]
    verdict.quarantine = bool(kept) and _kept(verdict, kept[0], policy)
    return verdict


def passed_keys(present: tuple[str, ...]) -> list[str]:
    """The ``quarantine_passed`` keys of passed mail of the categories ``present``:
    theirs, and ``clean`` when none has a quarantine of its own in amavis (its
    %quarantine_method_by_ccat has none for SPAMMY and OVERSIZED, which fall back to
    CC_CLEAN's $clean_quarantine_method)."""
    keys = [k for k in map(CATEGORY_KEY.get, present) if k is not None]
    return keys if any(k in OWN_QUARANTINE for k in keys) else [*keys, "clean"]


def _kept(verdict: Verdict, key: str, policy: PolicyConfig) -> bool:
    """Whether mail of category ``key`` that the policy would keep is worth keeping."""
    spam = key == "spam" or verdict.category == "SPAMMY"  # amavis: CC_SPAM or CC_SPAMMY
    return not (spam and beyond_spam_cutoff(verdict, policy.spam_quarantine_cutoff_level))


def beyond_spam_cutoff(verdict: Verdict, cutoff: float) -> bool:
    """Whether a spam verdict is past one of amavis's spam cutoffs (quarantine, admin
    notices): with a cutoff set (not 0), spam scoring at or above it, or spam from a
    blocked sender that is not also allowed, is not worth keeping or reporting."""
    if not cutoff:
        return False
    symbols = {h.symbol for h in verdict.hits}
    return verdict.score >= cutoff or (BLOCK in symbols and ALLOW not in symbols)

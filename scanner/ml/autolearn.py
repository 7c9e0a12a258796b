"""Which mail the classifier learns on its own: SpamAssassin's ``bayes_auto_learn``.

After the policy stage, a message the *other* checks are sure of is queued for
learning into the site model (:mod:`scanner.ml.autolearn_spool`): spam when their
points reach ``autolearn_spam_above`` with enough of them from header tests and from
body tests, ham (only with ``autolearn_ham``) when they stay below
``autolearn_ham_below``. As in SpamAssassin the classifier's own symbols (``BAYES_*``)
are left out of those points, and the classifier must not contradict the label: spam is
not learnt while the model gives it a BAYES_00 (under -1 point), ham not while the
model leans spam (over 0 points here; SpamAssassin allows up to +1).

What counts where: a symbol's *area* is ``header`` (header rules, DNS lists, SPF,
DKIM and DMARC results), ``body`` (body, rawbody, uri, full and mimeheader rules, URI
block lists) or none (meta rules, policy symbols), as SpamAssassin splits its
``head_only_points`` and ``body_only_points``; rules flagged ``noautolearn`` or
``userconf`` (GTUBE) are not points at all. Hits for one recipient only (pen pals),
and the scores of checks whose results are about the site's own history rather than
the content, are not points. A message whose analysis was incomplete (a ``*_FAIL``
symbol, a rule time-out) or that is infected or banned is never learnt.

Why ham learning is off by default: on the corpus's later mail it taught the model the
spam that neither the rules nor the model caught (``bench/classifier/autolearn.py``,
docs/classifier.md "Autolearn").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from scanner.scores import ScoreTable
from scanner.task import Hit, banned_parts, virus_names

AreaOf = Callable[[Hit], str | None]
"""A hit's area for autolearning: "header", "body", None (points, no area) or "ignore"
(not points: a rule flagged ``noautolearn`` or ``userconf``, such as GTUBE)."""

NOT_POINTS = frozenset({"bayes", "penpals"})
"""Checks whose hits never count as autolearn points: the learner itself, and the
site's own mail history (SpamAssassin's TxRep/AWL are ``noautolearn`` too)."""

INCOMPLETE = ("RULES_TIMEOUT",)
"""Symbols besides ``*_FAIL`` that say the analysis did not finish."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The ``[checks.settings.bayes] autolearn_*`` settings that decide a label."""

    spam_above: float = 8.0
    min_header_points: float = 0.0
    min_body_points: float = 0.0
    ham: bool = False
    ham_below: float = 0.1


@dataclass(frozen=True, slots=True)
class Decision:
    """``label``: "spam", "ham" or "no" (X-Spam-Status's ``autolearn=``); the points
    it was decided on and, for "no", why not."""

    label: str
    points: float = 0.0
    header: float = 0.0
    body: float = 0.0
    learner: float = 0.0
    reason: str = ""

    @property
    def learns(self) -> bool:
        return self.label in ("spam", "ham")


def decide(hits: Iterable[Hit], scores: ScoreTable, area_of: AreaOf,
           thresholds: Thresholds) -> Decision:
    """The autolearn label of a message with ``hits`` (message-level scores)."""
    hits = list(hits)
    if virus_names(hits) or banned_parts(hits):
        return Decision("no", reason="infected or banned")
    points = header = body = learner = 0.0
    scored = False
    for hit in hits:
        if hit.symbol.endswith("_FAIL") or hit.symbol in INCOMPLETE:
            return Decision("no", reason=f"incomplete analysis ({hit.symbol})")
        if hit.recipient is not None:
            continue
        value = scores.get(hit.symbol).weight * hit.factor
        if hit.source == "bayes":
            learner += value
            scored = True
            continue
        if hit.source in NOT_POINTS:
            continue
        area = area_of(hit)
        if area == "ignore":
            continue
        points += value
        if area == "header":
            header += value
        elif area == "body":
            body += value
    found = Decision("no", points, header, body, learner)
    if not scored:
        return _why(found, "no classifier score")
    if points >= thresholds.spam_above:
        if header < thresholds.min_header_points:
            return _why(found, "too few header points")
        if body < thresholds.min_body_points:
            return _why(found, "too few body points")
        if learner < -1.0:
            return _why(found, "the classifier says ham")
        return Decision("spam", points, header, body, learner)
    if thresholds.ham and points < thresholds.ham_below:
        if learner > 0.0:
            return _why(found, "the classifier leans spam")
        return Decision("ham", points, header, body, learner)
    return _why(found, "between the thresholds")


def _why(found: Decision, reason: str) -> Decision:
    return Decision("no", found.points, found.header, found.body, found.learner, reason)

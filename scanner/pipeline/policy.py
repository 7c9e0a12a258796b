"""Policy stage: turn hits into a per-recipient verdict (category, destiny, score).

Categories follow amavis's precedence; destinies default to amavis's (VIRUS and
BANNED discarded, the rest passed). Symbols flagged ``tempfail`` in the score table,
and crashed checks under ``on_check_failure = "tempfail"``, defer the message.
"""

from __future__ import annotations

from scanner.config import PolicyConfig
from scanner.scores import ScoreTable
from scanner.task import Destiny, Task, Verdict

PRECEDENCE = ("VIRUS", "BANNED", "UNCHECKED", "SPAM", "SPAMMY", "BAD-HEADER", "OVERSIZED",
              "CLEAN")
DESTINIES = {"VIRUS": Destiny.DISCARD, "BANNED": Destiny.DISCARD}
TAG2_LEVEL = 6.31
KILL_LEVEL = 6.31


def score_of(task: Task, scores: ScoreTable) -> float:
    """Sum of weight x factor over all hits."""
    return round(sum(scores.get(h.symbol).weight * h.factor for h in task.hits), 3)


def categories_of(task: Task, scores: ScoreTable, cfg: PolicyConfig) -> set[str]:
    """Every content category the hits put the message in."""
    found = {scores.get(h.symbol).category for h in task.hits} - {""}
    if task.failed_checks and cfg.on_check_failure == "unchecked":
        found.add("UNCHECKED")
    score = score_of(task, scores)
    if score >= KILL_LEVEL:
        found.add("SPAM")
    elif score >= TAG2_LEVEL:
        found.add("SPAMMY")
    return found


def main_category(found: set[str]) -> str:
    return next((c for c in PRECEDENCE if c in found), "CLEAN")


def decide(task: Task, scores: ScoreTable, cfg: PolicyConfig) -> None:
    """Fill ``task.verdicts`` for every recipient."""
    score = score_of(task, scores)
    category = main_category(categories_of(task, scores, cfg))
    tempfail = [h.symbol for h in task.hits if scores.get(h.symbol).tempfail]
    if task.failed_checks and cfg.on_check_failure == "tempfail":
        tempfail += [h.symbol for h in task.hits if h.symbol.endswith("_FAIL")]
    if tempfail:
        destiny, reason = Destiny.TEMPFAIL, ",".join(sorted(set(tempfail)))
    else:
        destiny, reason = DESTINIES.get(category, Destiny.PASS), ""
    for rcpt in task.envelope.recipients:
        task.verdicts[rcpt.address] = Verdict(category, destiny, score, reason)

"""Run the enabled checks on a Task, concurrently, each isolated from the others.

A check that raises or overruns its time becomes the hit ``<NAME>_FAIL`` (options: the
exception type) plus a log line with the traceback; the message goes on.

A bounce the bounce killer blocks anyway costs no spam checks, as in amavis (Amavis.pm,
``$bypass_spam_checks_by_bounce_killer``): when ``BOUNCE_KILLED`` weighs more than
:data:`BOUNCE_BYPASS_SCORE` (amavis: ``$bounce_killer_score > 20``), the check that
emits it runs first; if it killed the bounce for every recipient (none rescued by pen
pals, a local Message-ID domain or an ORIGINATING bank), the other spam checks (kind
``spam``: the classifier, DNS lists, SPF/DKIM/DMARC) are not run, a check with a
``run_without_spam`` (the rules: BAD-HEADER only, not the SpamAssassin rules) runs that
instead, so a backscatter storm does not cost their time per message. Other checks run
as always.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from scanner.checks.base import fail_symbol
from scanner.scores import ScoreTable
from scanner.task import Hit, Task

log = logging.getLogger("scanner.checks")

BOUNCE_KILLED = "BOUNCE_KILLED"
BOUNCE_BYPASS_SCORE = 20.0
"""``BOUNCE_KILLED`` weighing more than this skips a killed bounce's spam checks."""

Stage = Callable[[Task, str], None]


async def run_checks(task: Task, checks: Sequence, timeout: float,
                     stage: Stage | None = None, scores: ScoreTable | None = None) -> None:
    """Run every check; add their hits (or FAIL hits) to ``task``.

    ``stage(task, "check NAME")`` is called as each check starts (the scoreboard).
    ``scores``: the weights that decide whether a killed bounce skips the spam checks
    (None: every check runs)."""
    first = bounce_killers(checks, scores)
    rest = [c for c in checks if c not in first]
    if first:
        await _run_all(task, first, timeout, stage)
        if killed_for_every_recipient(task):
            rest = without_spam(rest)
            log.debug("(%s) bounce killed for every recipient; spam checks not run",
                      task.mail_id)
    await _run_all(task, rest, timeout, stage)


def without_spam(checks: Sequence) -> list:
    """``checks`` less those of kind ``spam``; one with ``run_without_spam`` (the rules:
    spam rules plus BAD-HEADER) runs that instead, whatever its kind."""
    kept: list[Any] = []
    for check in checks:
        partial = getattr(check, "run_without_spam", None)
        if partial is not None:
            kept.append(_WithoutSpam(_name(check), partial))
        elif getattr(check, "kind", "other") != "spam":
            kept.append(check)
    return kept


class _WithoutSpam:
    """A check run through its ``run_without_spam`` (same name, so same hit source)."""

    def __init__(self, name: str, run: Callable[[Task], Any]) -> None:
        self.name = name
        self._run = run

    async def run(self, task: Task) -> Iterable[Hit]:
        return await self._run(task)


def bounce_killers(checks: Sequence, scores: ScoreTable | None) -> list:
    """The checks that emit ``BOUNCE_KILLED``, when its weight lets a killed bounce skip
    the spam checks; else none."""
    if scores is None or scores.get(BOUNCE_KILLED).weight <= BOUNCE_BYPASS_SCORE:
        return []
    return [c for c in checks if BOUNCE_KILLED in getattr(c, "symbols", {})]


def killed_for_every_recipient(task: Task) -> bool:
    """True when each envelope recipient has a ``BOUNCE_KILLED`` hit."""
    killed = {h.recipient.lower() for h in task.hits
              if h.symbol == BOUNCE_KILLED and h.recipient is not None}
    return all(r.address.lower() in killed for r in task.envelope.recipients)


async def _run_all(task: Task, checks: Sequence, timeout: float,
                   stage: Stage | None) -> None:
    results = await asyncio.gather(*(_run_one(task, c, timeout, stage) for c in checks))
    for hits in results:
        for hit in hits:
            task.add_hit(hit)


def _name(check: object) -> str:
    return getattr(check, "name", type(check).__name__)


async def _run_one(task: Task, check: object, timeout: float,
                   stage: Stage | None) -> list[Hit]:
    name = _name(check)
    if stage is not None:
        stage(task, "check " + name)
    try:
        async with asyncio.timeout(timeout):  # cheaper than wait_for: no Task per check
            hits = await check.run(task)  # type: ignore[attr-defined]
        return [h if h.source else dataclasses.replace(h, source=name) for h in hits or []]
    except TimeoutError:
        log.error("(%s) check %s timed out after %g s", task.mail_id, name, timeout)
        task.failed_checks.append(name)
        return [Hit(fail_symbol(name), options=("timeout",), source=name)]
    except Exception as exc:
        log.exception("(%s) check %s failed: %s", task.mail_id, name, exc)
        task.failed_checks.append(name)
        return [Hit(fail_symbol(name), options=(type(exc).__name__,), source=name)]

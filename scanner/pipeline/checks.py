"""Run the enabled checks on a Task, concurrently, each isolated from the others.

A check that raises or overruns its time becomes the hit ``<NAME>_FAIL`` (options: the
exception type) plus a log line with the traceback; the message goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence

from scanner.checks.base import fail_symbol
from scanner.task import Hit, Task

log = logging.getLogger("scanner.checks")


async def run_checks(task: Task, checks: Sequence, timeout: float,
                     stage: Callable[[Task, str], None] | None = None) -> None:
    """Run every check; add their hits (or FAIL hits) to ``task``.

    ``stage(task, "check NAME")`` is called as each check starts (the scoreboard)."""
    results = await asyncio.gather(*(_run_one(task, c, timeout, stage) for c in checks))
    for hits in results:
        for hit in hits:
            task.add_hit(hit)


async def _run_one(task: Task, check: object, timeout: float,
                   stage: Callable[[Task, str], None] | None) -> list[Hit]:
    name = getattr(check, "name", type(check).__name__)
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

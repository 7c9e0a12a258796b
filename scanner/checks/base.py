"""The check contract: a named component that looks at a Task and returns symbol hits.

A check never decides the message's fate and never crashes the pipeline: the runner
turns an exception or a timeout into the symbol ``<NAME>_FAIL`` and policy decides
what that means. Checks are found through the ``scanner.checks`` entry point group.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from scanner.config import Config
from scanner.task import Hit, Task

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class NoSettings:
    """Settings of a check that takes none."""


class LastGood:
    """What checks last loaded from their files (a model, rule directories, keys), by
    key. ``scanner serve``'s master fills one at start-up (and again at SIGHUP, from
    an unchanged configuration) and hands it to every worker it forks: a worker
    started after a file broke (a replacement after a crash, ``max_requests``, the
    watchdog) keeps what the master read, as a running worker keeps its copy when a
    reload fails, instead of failing to start."""

    def __init__(self) -> None:
        self._items: dict[Hashable, Any] = {}

    def keep(self, key: Hashable, value: Any) -> Any:
        """Remember ``value`` as the last good one for ``key``; return it."""
        self._items[key] = value
        return value

    def get(self, key: Hashable) -> Any | None:
        return self._items.get(key)

    def update(self, other: LastGood) -> None:
        """Take everything ``other`` holds (newer loads replace older ones)."""
        self._items.update(other._items)


FileStamp = tuple[int, int, int] | None
"""A file's inode, size and mtime (ns); None when it cannot be looked at."""


def file_stamp(path: str) -> FileStamp:
    """``path``'s :data:`FileStamp`: a replaced or rewritten file has another one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class WatchedFile:
    """A data file a check asks ``scanner serve``'s master to look at every ``interval``
    seconds (:mod:`scanner.serve.watch`): a change reloads as SIGHUP does. ``stamp``:
    the file as the check read it."""

    path: str
    interval: float
    stamp: FileStamp


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a check gets besides its own settings."""

    config: Config
    run_cpu: Callable[..., Awaitable[Any]]
    """``await ctx.run_cpu(func, *args)`` runs CPU-heavy work off the event loop."""
    last_good: LastGood = field(default_factory=LastGood)
    """What was loaded before (:class:`LastGood`); a fresh one outside ``serve``."""


@runtime_checkable
class Check(Protocol):
    """One check. ``name`` is snake_case; ``symbols`` maps each symbol it may emit to a
    one-line description (weights live in ``scanner/data/scores.toml``)."""

    name: ClassVar[str]
    description: ClassVar[str]
    symbols: ClassVar[Mapping[str, str]]
    default_enabled: ClassVar[bool]
    kind: ClassVar[str]
    """virus, banned, header, spam or other: which bypass_*_checks policy flag drops its
    hits for a recipient (other: never dropped)."""
    Settings: ClassVar[type]

    def __init__(self, settings: Any, context: CheckContext) -> None: ...

    async def run(self, task: Task) -> Iterable[Hit]: ...

    # A check of another kind whose findings are partly spam scores (the rules: spam
    # rules and BAD-HEADER) may also have ``async def run_without_spam(task)``: what it
    # finds besides spam, run instead of ``run`` when the message's spam checks are
    # skipped (a bounce the bounce killer blocks, scanner.pipeline.checks).


def fail_symbol(check_name: str) -> str:
    """The symbol that stands for 'this check could not do its job'."""
    return f"{check_name.upper()}_FAIL"


def time_for_check(task: Task, budget: float) -> float:
    """Seconds a check starting now may take: its ``budget`` (``checks.timeout``), or
    what is left of the message's own time (``task.deadline``, from
    ``server.message_timeout``) when that is less, since the time spent before the
    checks (unpacking) counts against the message's time, not against the checks'."""
    if task.deadline is None:
        return budget
    left = task.deadline - asyncio.get_running_loop().time()
    return max(0.0, min(budget, left))

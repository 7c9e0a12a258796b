"""The master's file watch: data files a check asks to have looked at (the classifier's
model, ``[checks.settings.bayes] reload_interval``) are looked at every few seconds,
and a change is reloaded as a SIGHUP reloads (:meth:`scanner.serve.master.Master`).

The watch only compares stamps (inode, size, mtime: one ``stat``); reading the file is
left to the SIGHUP machinery: every worker reloads in its thread pool, between
messages, while it serves (:mod:`scanner.serve.reload`), and the master keeps what its
configuration check loaded for the workers it forks later. The file watch once ran in
the check itself, inside the first message after each interval: that message waited
for the file to be read and parsed (on a slow or hung file system until
``message_timeout``, then 451), and the master never learnt of the new model, so a
worker started after the file broke again fell back to the model of the start.

A file is reported once per change: a broken file is logged once by each reload, not
at every interval. The ``stat`` runs in a thread of its own and the master waits for it
at most :data:`STAT_TIMEOUT`: on a hung file system (NFS) the master goes on watching
its workers, and the file is looked at again once the hung ``stat`` returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from scanner.checks.base import FileStamp, WatchedFile, file_stamp

log = logging.getLogger("scanner")

STAT_TIMEOUT = 1.0
"""Seconds the master waits for one ``stat`` of a watched file."""


@dataclass(slots=True)
class _Entry:
    interval: float
    stamp: FileStamp
    due: float  # monotonic time of the next look
    pending: Future[FileStamp] | None = None  # a stat that has not returned yet
    hung: bool = False  # that stat was reported hung


class FileWatch:
    """The files the checks asked to be watched, each at its own interval."""

    def __init__(self, files: Iterable[WatchedFile]) -> None:
        now = time.monotonic()
        self._pool: ThreadPoolExecutor | None = None  # started at the first look
        self._files: dict[str, _Entry] = {}
        for f in files:
            if f.interval > 0:
                self._files[f.path] = _Entry(f.interval, f.stamp, now + f.interval)

    @classmethod
    def of_checks(cls, checks: Iterable[object]) -> FileWatch:
        """The files of every check that has ``watched() -> list[WatchedFile]``."""
        return cls(f for check in checks if callable(getattr(check, "watched", None))
                   for f in check.watched())  # type: ignore[attr-defined]

    @property
    def paths(self) -> list[str]:
        return sorted(self._files)

    def changed(self, now: float | None = None) -> list[str]:
        """The watched files whose time to be looked at has come and that changed since
        the last look (or since the check read them)."""
        now = time.monotonic() if now is None else now
        out = []
        for path, entry in self._files.items():
            if now < entry.due:
                continue
            entry.due = now + entry.interval
            looked, stamp = self._look(path, entry)
            if looked and stamp != entry.stamp:
                entry.stamp = stamp
                out.append(path)
        return out

    def _look(self, path: str, entry: _Entry) -> tuple[bool, FileStamp]:
        """(True, the file's stamp), or (False, None) while its ``stat`` hangs."""
        if entry.pending is None:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="file-watch")
            entry.pending = self._pool.submit(file_stamp, path)
        try:
            stamp = entry.pending.result(timeout=STAT_TIMEOUT)
        except TimeoutError:
            if not entry.hung:  # once per hang
                entry.hung = True
                log.warning("looking at %s takes over %.0f s (a hung file system?); its "
                            "changes are seen once that returns", path, STAT_TIMEOUT)
            return False, None
        entry.pending, entry.hung = None, False
        return True, stamp

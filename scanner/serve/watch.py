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
at every interval.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from scanner.checks.base import FileStamp, WatchedFile, file_stamp


@dataclass(slots=True)
class _Entry:
    interval: float
    stamp: FileStamp
    due: float  # monotonic time of the next look


class FileWatch:
    """The files the checks asked to be watched, each at its own interval."""

    def __init__(self, files: Iterable[WatchedFile]) -> None:
        now = time.monotonic()
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
            stamp = file_stamp(path)
            if stamp != entry.stamp:
                entry.stamp = stamp
                out.append(path)
        return out

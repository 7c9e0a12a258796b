"""The quarantine: store held mail durably, look it up, read it back, delete and expire it.

``store()`` is what the pipeline calls before it answers Postfix: the gzip file is
complete and fsynced and its index row committed when it returns, or it raises
:class:`QuarantineError` having left nothing behind (the caller then answers 451).
The index row is the commit point: a file without a row is debris that ``sweep()``
removes once it is older than the expiry age, never a message anyone sees. Each file
starts with the message's envelope (:mod:`scanner.quarantine.envelope`), so after a lost
or replaced index ``reindex()`` can give the files their rows back.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath

from scanner.hostname import local_hostname
from scanner.mailid import new_secret_id
from scanner.pipeline.parse import header_display, header_text, parse_headers
from scanner.quarantine import envelope, files
from scanner.quarantine.config import QuarantineConfig
from scanner.quarantine.index import Index, open_index
from scanner.quarantine.record import (
    AlreadyReleased,
    QuarantineError,
    QuarantineRecord,
    UnknownMailId,
    check_mail_id,
    relative_path,
)
from scanner.quarantine.when import format_time
from scanner.smtp.params import Param

DEBRIS_MIN_AGE = 3600.0  # temporary and row-less files younger than this may be in use
RUNNING = 900.0  # a release claimed this recently, with no outcome yet, may be running
MAX_TEXT = 2000


def _clean(text: str | None, limit: int = MAX_TEXT) -> str:
    """Text safe for any index: valid UTF-8, no NUL, bounded length."""
    if not text:
        return ""
    fixed = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return fixed.replace("\x00", "")[:limit]


class Quarantine:
    """Quarantined messages below ``cfg.directory``, listed in ``cfg.index``."""

    def __init__(self, cfg: QuarantineConfig, *, index: Index | None = None,
                 hostname: str | None = None) -> None:
        self.cfg = cfg
        self.directory = Path(cfg.directory)
        self.hostname = hostname or local_hostname()
        self._index = index

    @property
    def index(self) -> Index:
        if self._index is None:
            self._index = open_index(self.cfg.index, self.cfg.directory)
        return self._index

    # -- storing -------------------------------------------------------------------------

    def store(self, *, mail_id: str, raw: bytes, sender: str, recipients: list[str],
              category: str, score: float | None, symbols: list[str], subject: str,
              message_id: str, client_addr: str | None, policy_bank: str,
              mail_params: Sequence[Param] | None = None,
              rcpt_params: Mapping[str, Sequence[Param]] | None = None,
              held_for: Sequence[str] | None = None,
              stored_at: float | None = None,
              secret_id: str | None = None) -> QuarantineRecord:
        """Write the message and its index row; QuarantineError (nothing kept) on failure.

        ``mail_params``, ``rcpt_params`` (by recipient): the ESMTP parameters the message
        came with, written into the file's envelope block for a release to send again
        (``mail_params`` None: not known, the release guesses as for an older file).
        ``held_for``: those of ``recipients`` who do not get the message (their copy is
        held); the others' went on. None: not known. ``stored_at``: when the message
        was first held (a message brought over from another quarantine); default now.
        ``secret_id``: the one it had there; default a new one."""
        try:
            check_mail_id(mail_id)
        except UnknownMailId as exc:
            raise QuarantineError(str(exc)) from None
        rel = relative_path(mail_id, category, self.cfg.subdir_levels)
        rec = QuarantineRecord(
            mail_id=mail_id, secret_id=secret_id or new_secret_id(),
            stored_at=time.time() if stored_at is None else stored_at,
            sender=_clean(sender if sender != "<>" else ""),
            recipients=[_clean(r, 600) for r in recipients], category=_clean(category).upper(),
            score=score, symbols=[_clean(s, 200) for s in symbols], size=len(raw),
            subject=_clean(subject), message_id=_clean(message_id, 1000),
            client_addr=_clean(client_addr) or None, policy_bank=_clean(policy_bank),
            relative_path=rel, path=str(self.directory / rel), host=self.hostname,
            held_for=None if held_for is None else [_clean(r, 600) for r in held_for])
        stored = envelope.wrap(raw, sender=rec.sender, recipients=rec.recipients,
                               held_for=rec.held_for,
                               mail_id=mail_id, category=rec.category,
                               stored_at=rec.stored_at, mail_params=mail_params,
                               rcpt_params={_clean(r, 600): p
                                            for r, p in (rcpt_params or {}).items()})
        path = files.write_atomic(self.directory, rel, stored)
        try:
            self.index.insert(rec)
        except BaseException as exc:
            files.remove(path)
            if isinstance(exc, Exception):
                raise QuarantineError(f"cannot add {mail_id} to the quarantine index "
                                      f"{self.index.location}: {exc}") from exc
            raise
        return rec

    # -- looking up ----------------------------------------------------------------------

    def _with_path(self, rec: QuarantineRecord) -> QuarantineRecord:
        path = self.file_of(rec, resolve=False)  # listing touches no file
        rec.path = str(path) if path is not None else ""
        return rec

    def file_of(self, rec: QuarantineRecord, *, resolve: bool = True) -> Path | None:
        """The message's file below the directory; None when the row names anything else
        (``../``, an absolute path, another message's name, with ``resolve`` a symlink
        leading out). Such a row, damaged or forged by whoever may write the index (a
        shared PostgreSQL index, the service user while root runs expire from cron),
        never makes us read, mail out or remove a file outside the quarantine."""
        rel = PurePosixPath(rec.relative_path)
        if rel.is_absolute() or ".." in rel.parts or not rel.name.endswith(
                f"-{rec.mail_id}.gz"):
            return None
        path = self.directory / rel
        if not resolve:
            return path
        inside = os.path.realpath(self.directory) + os.sep
        return path if os.path.realpath(path).startswith(inside) else None

    def get(self, mail_id: str) -> QuarantineRecord:
        """The index row; UnknownMailId (naming a stray file if one exists) otherwise."""
        check_mail_id(mail_id)
        rec = self.index.get(mail_id)
        if rec is None:
            stray = self.find_files(mail_id)
            hint = (f"; the file {stray[0]} exists without one (a store that broke off, "
                    "or an index restored from an older backup)") if stray else ""
            raise UnknownMailId(f"unknown mail_id {mail_id}: no row in the quarantine index "
                                f"{self.index.location}{hint}")
        return self._with_path(rec)

    def find_files(self, mail_id: str) -> list[Path]:
        """Quarantine files on this host named after ``mail_id`` (index or not)."""
        sub = self.directory.joinpath(*mail_id[:self.cfg.subdir_levels])
        return sorted(sub.glob(f"*-{mail_id}.gz")) if sub.is_dir() else []

    def read_record(self, rec: QuarantineRecord) -> bytes:
        """The message as it was received (without the envelope block)."""
        return self.read_stored(rec)[1]

    def read_stored(self, rec: QuarantineRecord) -> tuple[envelope.Envelope | None, bytes]:
        """(the file's envelope block, None for a file without one; the message)."""
        path = self.file_of(rec)
        if path is None:
            raise QuarantineError(f"the index row of {rec.mail_id} names "
                                  f"{rec.relative_path!r}, which is not its file below "
                                  f"{self.directory}; not reading it")
        try:
            return envelope.split(files.read_gz(path))
        except QuarantineError as exc:
            if not path.exists() and rec.host and rec.host != self.hostname:
                raise QuarantineError(f"{exc}; the message was stored on host {rec.host}, "
                                      "run the command there") from None
            raise

    def read(self, mail_id: str) -> bytes:
        """The raw message as it was stored."""
        return self.read_record(self.get(mail_id))

    def list(self, category: str | None = None, rcpt: str | None = None,
             since: float | None = None) -> list[QuarantineRecord]:
        return list(self.records(category, rcpt, since))

    def records(self, category: str | None = None, rcpt: str | None = None,
                since: float | None = None) -> Iterator[QuarantineRecord]:
        """Like :meth:`list`, one at a time (constant memory for any quarantine size)."""
        return (self._with_path(r) for r in self.index.iter_rows(category, rcpt, since))

    # -- the per-message lock ------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, rec: QuarantineRecord, what: str) -> Iterator[None]:
        """Hold an exclusive lock on the message's file (while releasing or deleting).

        A missing file gives no lock and no error here; reading it reports that.
        """
        path = self.file_of(rec)
        if path is None:  # reading it is refused; a delete removes the row alone
            yield
            return
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield
            return
        except OSError as exc:
            raise QuarantineError(f"cannot open {path} to {what}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AlreadyReleased(f"{rec.mail_id} is being released by another process "
                                      f"right now; not going to {what} it") from None
            yield
        finally:
            os.close(fd)

    def why_not_held(self, mail_id: str) -> QuarantineError:
        """The error to report when a claim or delete found the row not ``held``."""
        rec = self.index.get(mail_id)
        if rec is None:
            return UnknownMailId(f"unknown mail_id {mail_id}: its index row was removed "
                                 "(expired or deleted) a moment ago")
        if rec.released_at is not None:
            return AlreadyReleased(
                f"{mail_id} was already released at {format_time(rec.released_at)} by "
                f"{rec.released_by} to {', '.join(rec.released_to) or '?'}; "
                "`scanner quarantine release --force` sends it again")
        started = format_time(rec.release_started or 0)
        if not rec.release_result and time.time() - (rec.release_started or 0) < RUNNING:
            return AlreadyReleased(
                f"{mail_id} is being released (started at {started} by {rec.released_by}, "
                "perhaps on another host); see 'show' for the outcome")
        last = f" (last reply: {rec.release_result[0]})" if rec.release_result else ""
        return AlreadyReleased(
            f"a release of {mail_id} started at {started} by {rec.released_by} did not "
            f"finish{last}; the next hop may have it already; check its log, then use "
            "--force to release it anyway")

    # -- removing ------------------------------------------------------------------------

    def delete(self, mail_id: str, *, force: bool = False) -> QuarantineRecord:
        """Remove row and file. Refused while a release runs (or broke off) unless forced."""
        rec = self.get(mail_id)
        with self.lock(rec, "delete"):
            if not self.index.delete(mail_id, force=force):
                raise self.why_not_held(mail_id)
            path = self.file_of(rec)
            if path is not None:
                files.remove(path)
        return rec

    def expire(self, older_than_seconds: float, category: str | None = None) -> int:
        """Remove messages stored more than ``older_than_seconds`` ago (of ``category``
        alone, when given); how many went.

        Messages being released are kept (a release that broke off over a day ago is
        not), then debris older than the cut-off is swept (see :meth:`sweep`).
        """
        cutoff = time.time() - older_than_seconds
        count = 0
        for rec in self.index.iter_rows(category=category, before=cutoff):
            if self.index.delete_expired(rec.mail_id, cutoff):
                path = self.file_of(rec)
                if path is not None:
                    files.remove(path)
                count += 1
        self.sweep(max(older_than_seconds, DEBRIS_MIN_AGE))
        return count

    def reindex(self, *, dry_run: bool = False) -> tuple[list[QuarantineRecord], list[str]]:
        """Index rows for quarantine files that have none, from the envelope each file
        carries (a lost or replaced index); returns (rows added, files left out and why).
        The rows get new secret_ids, no score and no symbols; release works as before."""
        if not self.directory.is_dir():
            raise QuarantineError(f"{self.directory}: no such quarantine directory")
        named = ((files.mail_id_of(p), p) for p in files.walk(self.directory))
        found = {mail_id: p for mail_id, p in named if mail_id is not None}
        known = self.index.known(list(found))
        added: list[QuarantineRecord] = []
        skipped: list[str] = []
        for mail_id, path in sorted(found.items()):
            if mail_id in known:
                continue
            try:
                rec = self._record_from_file(mail_id, path)
            except QuarantineError as exc:
                skipped.append(f"{path}: {exc}")
                continue
            if not dry_run:
                self.index.insert(rec)
            added.append(rec)
        return added, skipped

    def _record_from_file(self, mail_id: str, path: Path) -> QuarantineRecord:
        env, raw = envelope.split(files.read_gz(path))
        if env is None or not env.recipients:
            raise QuarantineError("no envelope in the file (stored before 2026-12-05): its "
                                  "recipients are unknown; release it by hand (zcat)")
        if env.mail_id != mail_id:
            raise QuarantineError(f"the file's envelope names {env.mail_id!r}, not its own "
                                  "mail_id")
        headers = parse_headers(raw)  # as the filter read it when it stored the message
        category = env.category or path.name.rsplit("-", 1)[0].upper()
        return QuarantineRecord(
            mail_id=mail_id, secret_id=new_secret_id(),
            stored_at=env.stored_at if env.stored_at is not None else path.stat().st_mtime,
            sender=env.sender, recipients=env.recipients, category=_clean(category),
            score=None, symbols=[], size=len(raw),
            subject=_clean(header_display(headers, "Subject")),
            message_id=_clean(header_text(headers, "Message-ID"), 1000),
            client_addr=None, policy_bank="",
            relative_path=str(path.relative_to(self.directory)), path=str(path),
            host=self.hostname, held_for=env.held_for)

    def sweep(self, min_age: float = DEBRIS_MIN_AGE) -> list[Path]:
        """Remove temporary files and files without an index row older than ``min_age``."""
        if not self.directory.is_dir():
            return []
        cutoff = time.time() - max(min_age, DEBRIS_MIN_AGE)
        old: dict[str, Path] = {}
        removed: list[Path] = []
        for path in files.walk(self.directory):
            try:
                if path.lstat().st_mtime >= cutoff:
                    continue
            except OSError:
                continue
            if files.is_temp(path):
                if files.remove(path):
                    removed.append(path)
                continue
            mail_id = files.mail_id_of(path)
            if mail_id is not None:
                old[mail_id] = path
        known = self.index.known(list(old))
        for mail_id, path in old.items():
            if mail_id not in known and files.remove(path):
                removed.append(path)
        return removed


__all__ = ["Quarantine", "QuarantineError", "QuarantineRecord"]

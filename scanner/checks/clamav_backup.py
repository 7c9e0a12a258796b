"""The backup virus scanner: a command-line scanner (clamscan) run when clamd gave no answer.

amavis's ``@av_scanners_backup`` (Amavis/AV.pm, ``virus_scan``): when every primary
scanner failed for a message, the backup scanners run on its parts; only when they fail
too is the message tempfailed. Its default backup is ``ClamAV-clamscan``, ``clamscan
--stdout --no-summary -r --tempdir=... {}``. Here the command is the clamav check's
``backup_command``, an argv list: an element ``{}`` becomes the directory holding the
files to scan, an element ``{}/*`` one argument per file (amavis's placeholders).

The pieces clamd would have been sent are written, one file each (``p000``,
``p001``, ...), into a private directory (mode 0700, under ``server.tmp_dir``) that is
removed afterwards; ``TMPDIR`` points into it, so clamscan's own temporary files go there
too. The command runs in a process group of its own, killed when the check's deadline
passes or the check is cancelled. At most one backup scan runs at a time per worker:
clamscan loads the whole signature database each time (about a gigabyte of memory with
the official one), and a worker scans many messages at once.

Its output is read as clamscan(1) documents it: ``FILE: OK``, ``FILE: NAME FOUND``
(one line per name with ``--allmatch``), ``FILE: ... ERROR``, ``FILE: Empty file``;
exit status 0 no virus, 1 virus(es) found, 2 some error(s). Each file's lines are read
as clamd's reply for that piece (:func:`scanner.checks.clamd_client.parse_reply`), so
the names and their treatment are the same. A file with no line counts as clean when
the exit status is 0 or 1 (``--infected`` prints only infected files), as failed
otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from scanner.checks.clamd_client import ClamdError, ScanReply, Status, parse_reply

DIR_PLACEHOLDER = "{}"
FILES_PLACEHOLDER = "{}/*"
_ERROR_PREFIXES = ("WARNING: ", "ERROR: ", "LibClamAV Warning: ", "LibClamAV Error: ")
_DETAIL_MAX = 300


class BackupError(Exception):
    """The backup command gave no usable answer (not found, timeout, error, garbage)."""


def check_command(argv: Sequence[str]) -> None:
    """Raise ValueError unless ``argv`` names a program and has a placeholder."""
    if not argv or not argv[0]:
        raise ValueError("the first element must be the program (clamscan)")
    if DIR_PLACEHOLDER not in argv and FILES_PLACEHOLDER not in argv:
        raise ValueError(f"no element {DIR_PLACEHOLDER!r} (the directory of the files to "
                         f"scan) or {FILES_PLACEHOLDER!r} (the files)")


def expand(argv: Sequence[str], directory: str, names: Sequence[str]) -> list[str]:
    """``argv`` with ``{}`` replaced by ``directory`` and ``{}/*`` by each file in it."""
    out: list[str] = []
    for arg in argv:
        if arg == DIR_PLACEHOLDER:
            out.append(directory)
        elif arg == FILES_PLACEHOLDER:
            out += [os.path.join(directory, name) for name in names]
        else:
            out.append(arg)
    return out


def parse_output(text: str, paths: Sequence[str], status: int
                 ) -> list[ScanReply | ClamdError]:
    """Each file's answer (in the order of ``paths``) from clamscan's output and status."""
    records: dict[str, list[str]] = {path: [] for path in paths}
    for line in text.splitlines():
        body, error = _unprefixed(line.strip())  # "WARNING: FILE: Can't access file"
        path, sep, rest = body.partition(": ")
        if not sep or path not in records:
            continue
        if rest == "Empty file":
            rest = "OK"
        records[path].append(f"stream: {rest} ERROR" if error else f"stream: {rest}")
    return [_answer(records[path], status) for path in paths]


def _unprefixed(line: str) -> tuple[str, bool]:
    for prefix in _ERROR_PREFIXES:
        if line.startswith(prefix):
            return line[len(prefix):], True
    return line, False


def _answer(records: list[str], status: int) -> ScanReply | ClamdError:
    if not records:
        if status in (0, 1):
            return ScanReply(Status.CLEAN)
        return ClamdError(f"no answer for the file (exit status {status})")
    try:
        reply = parse_reply("\n".join(records).encode())
    except ClamdError as exc:
        return ClamdError(str(exc).replace("clamd", "the backup"))
    if reply.status is Status.CLEAN and status not in (0, 1, 2):
        return ClamdError(f"exit status {status}")
    return reply


class BackupScanner:
    """Runs ``argv`` on files holding the given pieces' bytes; one run at a time."""

    def __init__(self, argv: Sequence[str], tmp_root: str | None = None) -> None:
        check_command(argv)
        self.argv = tuple(argv)
        self.tmp_root = tmp_root or None
        self.label = f"backup {os.path.basename(self.argv[0])}"
        """How results are marked in the log and in symbol options."""
        self.runs = 0
        """Times the command was started."""
        self._limits: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def missing(self) -> str | None:
        """Why the program cannot be run, or None when it is found."""
        if shutil.which(self.argv[0]) is None:
            return f"{self.argv[0]!r} not found or not executable"
        return None

    async def scan(self, blobs: Sequence[Callable[[], bytes]], deadline: float
                   ) -> list[ScanReply | ClamdError]:
        """The answer for each blob, in order; BackupError when the command failed as a
        whole (could not start, ran past ``deadline``, said nothing usable)."""
        loop = asyncio.get_running_loop()
        limit = self._limits.setdefault(loop, asyncio.Semaphore(1))
        try:
            async with asyncio.timeout_at(deadline):
                async with limit:
                    return await self._scan(blobs)
        except TimeoutError:
            raise BackupError("no answer before the check's deadline") from None

    async def _scan(self, blobs: Sequence[Callable[[], bytes]]
                    ) -> list[ScanReply | ClamdError]:
        work = os.path.abspath(await asyncio.to_thread(
            tempfile.mkdtemp, prefix="scanner-avbackup-", dir=self.tmp_root))
        try:
            names = await asyncio.to_thread(_write, work, blobs)
            parts = os.path.join(work, "parts")
            status, out, err = await self._run(expand(self.argv, parts, names),
                                               os.path.join(work, "tmp"))
            replies = parse_output(out, [os.path.join(parts, n) for n in names], status)
            if status not in (0, 1) and all(isinstance(r, ClamdError) for r in replies):
                detail = " / ".join((err.strip() or out.strip()).splitlines())
                raise BackupError(f"exit status {status}"
                                  + (f": {detail[:_DETAIL_MAX]}" if detail else ""))
            return replies
        finally:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, work, True))

    async def _run(self, argv: list[str], tmp: str) -> tuple[int, str, str]:
        self.runs += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True,
                env={**os.environ, "TMPDIR": tmp})
        except OSError as exc:
            raise BackupError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        try:
            out, err = await proc.communicate()
        except BaseException:  # deadline, cancellation: nothing of it may stay behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
            raise
        code = proc.returncode if proc.returncode is not None else -1
        if code < 0:
            raise BackupError(f"killed by signal {-code}")
        return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _write(work: str, blobs: Sequence[Callable[[], bytes]]) -> list[str]:
    """Write each blob to ``work/parts/pNNN`` (only the owner may read them)."""
    parts = Path(work, "parts")
    parts.mkdir(mode=0o700)
    Path(work, "tmp").mkdir(mode=0o700)
    names = []
    for index, blob in enumerate(blobs):
        name = f"p{index:03d}"
        fd = os.open(parts / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(blob())
        names.append(name)
    return names

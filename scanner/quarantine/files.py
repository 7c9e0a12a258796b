"""The quarantine's files: write one atomically and durably, read one back, find debris.

A message becomes visible under its final name only after its compressed bytes are on
disk: they go to a hidden temporary file in the same directory, which is fsynced,
linked to the final name (never replacing an existing file) and the directory fsynced.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from scanner.quarantine.record import QuarantineError

TMP_PREFIX = ".tmp-"
FILE_MODE = 0o640
DIR_MODE = 0o750


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(base: Path, relative_dir: str) -> Path:
    """Create ``base/relative_dir`` (and fsync each new entry's parent)."""
    if not base.is_dir():
        os.makedirs(base, DIR_MODE, exist_ok=True)
    path = base
    for part in [p for p in relative_dir.split("/") if p]:
        parent, path = path, path / part
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            continue
        fsync_dir(parent)
    return path


def write_atomic(base: Path, relative: str, raw: bytes) -> Path:
    """gzip ``raw`` into ``base/relative``; the file exists complete or not at all.

    Raises :class:`QuarantineError` (with nothing left behind) on any failure, and
    also when the final name exists already.
    """
    final = base / relative
    tmp: str | None = None
    linked = False
    try:
        directory = make_dirs(base, os.path.dirname(relative))
        data = gzip.compress(raw, compresslevel=6, mtime=int(time.time()))
        fd, tmp = _mkstemp(directory)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp_left = _link_no_replace(tmp, final)
        linked = True  # from here on, a failure removes the final name too
        if tmp_left:
            os.unlink(tmp)
        tmp = None
        fsync_dir(directory)
        return final
    except BaseException as exc:
        for leftover in ([tmp] if tmp is not None else []) + ([final] if linked else []):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        with contextlib.suppress(OSError):
            fsync_dir(final.parent)
        if isinstance(exc, QuarantineError):
            raise
        if isinstance(exc, OSError):
            raise QuarantineError(f"cannot write quarantine file {final}: "
                                  f"{exc.strerror or exc}") from exc
        raise


def _mkstemp(directory: Path) -> tuple[int, str]:
    name = f"{TMP_PREFIX}{os.getpid()}-{os.urandom(6).hex()}"
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    return fd, path


def _link_no_replace(tmp: str, final: Path) -> bool:
    """Give ``tmp`` the name ``final`` unless taken; True if ``tmp`` still exists."""
    try:
        os.link(tmp, final)
        return True
    except FileExistsError:
        raise QuarantineError(f"quarantine file {final} exists already "
                              "(mail_id used twice?)") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
    if final.exists():  # a file system without hard links: check, then rename
        raise QuarantineError(f"quarantine file {final} exists already") from None
    os.rename(tmp, final)
    return False


def read_gz(path: Path) -> bytes:
    """The raw message in a quarantine file; QuarantineError naming the file if bad."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise QuarantineError(f"quarantine file {path} is missing") from None
    except OSError as exc:
        raise QuarantineError(f"cannot read quarantine file {path}: {exc.strerror}") from None
    if not data:  # gzip reads no member at all as an empty message, not as an error
        raise QuarantineError(f"quarantine file {path} is corrupt: it is empty (0 bytes)")
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise QuarantineError(f"quarantine file {path} is corrupt: {exc}") from None


def remove(path: Path) -> bool:
    """Unlink a quarantine file and fsync its directory; False if it was gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    with contextlib.suppress(OSError):
        fsync_dir(path.parent)
    return True


def walk(base: Path) -> Iterator[Path]:
    """Every regular file below ``base`` except the index database and its journals."""
    for root, dirs, names in os.walk(base):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith("index.sqlite"):
                continue
            yield Path(root) / name


def is_temp(path: Path) -> bool:
    return path.name.startswith(TMP_PREFIX)


def mail_id_of(path: Path) -> str | None:
    """``spam-7vykgLjHGVrk.gz`` -> ``7vykgLjHGVrk``; None for other names."""
    name = path.name
    if not name.endswith(".gz") or is_temp(path):
        return None
    stem = name[:-3]
    return stem[-12:] if len(stem) > 13 and stem[-13] == "-" else None

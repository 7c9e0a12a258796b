"""Read training mail from Maildirs, mbox files, MH folders, directories and archives.

:func:`iter_messages` detects the format of a path and yields ``(source name, raw
bytes)`` per message in a stable order (sorted names), so training is reproducible:

* a directory with ``cur/`` or ``new/``: Maildir;
* a directory with ``.mh_sequences`` or only numeric file names: MH folder;
* any other directory: every file below it (recursively, dot-files skipped);
* a file starting with an mbox ``From `` line: mbox (a ``From `` line separates
  messages only after a blank line and with an asctime() date; other ``From `` lines in
  bodies are kept as body text);
* ``.gz``, ``.xz``, ``.bz2`` files (detected by content) are decompressed, and tar
  archives (compressed or not) are read member by member; ``ARCHIVE#PREFIX`` limits a
  tar archive to members under ``PREFIX`` (e.g. ``corpus.tar.xz#corpus/spam``).

Unreadable or non-mail files are reported through ``on_problem(name, reason)`` and
skipped; nothing here raises for bad input except for a path that does not exist.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from scanner.bounded import open_without_waiting as _open
from scanner.bounded import read_at_most

ProblemHandler = Callable[[str, str], None]
MAX_MESSAGE_BYTES = 64 << 20
# mbox lines are read in pieces of at most this size: a line of gigabytes (a .gz of one
# endless line is a few megabytes) must not be held in memory whole
MAX_LINE_PIECE = 1 << 20

# an mbox separator: "From SENDER" and an asctime() date (day, month, day of month,
# time; a zone or "remote from HOST" may follow), as qmail, Postfix, mutt and Thunderbird
# ("From - Mon ...") write it; a body line such as "From the desk of the CEO, 12:30 today"
# is not one
_FROM_LINE = re.compile(
    rb"^From \S*\s+(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+"
    rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{1,2}\s+\d{1,2}:\d{2}"
    rb"(?::\d{2})?\s+(?:\S+\s+)?\d{4}\b")
_HEADER_START = re.compile(rb"^[!-9;-~]+[ \t]*:")
Opener = Callable[[BinaryIO], BinaryIO]


def _gunzip(raw: BinaryIO) -> BinaryIO:
    return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]


def _unxz(raw: BinaryIO) -> BinaryIO:
    return lzma.LZMAFile(raw, "rb")  # type: ignore[return-value]  # noqa: SIM115


def _bunzip2(raw: BinaryIO) -> BinaryIO:
    return bz2.BZ2File(raw, "rb")  # type: ignore[return-value]  # noqa: SIM115


# (magic, decompressing reader over the raw file, tarfile's name for it); the readers
# leave the raw file open when closed
_COMPRESSED: tuple[tuple[bytes, Opener, str], ...] = (
    (b"\x1f\x8b", _gunzip, "gz"), (b"\xfd7zXZ\x00", _unxz, "xz"), (b"BZh", _bunzip2, "bz2"))


def _ignore(name: str, reason: str) -> None:
    """Default problem handler: drop the report."""


def iter_messages(path: str, on_problem: ProblemHandler = _ignore) -> Iterator[tuple[str, bytes]]:
    """Yield every message under ``path``; raise ``FileNotFoundError`` if it is missing."""
    if not os.path.exists(path):
        archive, sep, prefix = path.partition("#")
        if sep and os.path.isfile(archive):
            yield from _read_tar_prefix(archive, prefix.strip("/"), on_problem)
            return
        raise FileNotFoundError(f"{path}: no such file or directory")
    if not os.path.isdir(path) and not _regular(path, on_problem):
        return
    try:
        kind = detect_format(path)
    except OSError as exc:  # a directory this user may not list
        on_problem(path, f"cannot read the directory: {exc.strerror or exc}")
        return
    if kind == "maildir":
        for sub in ("new", "cur"):
            folder = os.path.join(path, sub)
            if os.path.isdir(folder):
                yield from _read_files(_plain_files(folder, on_problem), on_problem)
    elif kind == "mh":
        names = [n for n in _listdir(path, on_problem) if n.isdigit()]
        files = [os.path.join(path, n) for n in sorted(names, key=int)]
        yield from _read_files(files, on_problem)
    elif kind == "directory":
        yield from _read_files(_walk(path, on_problem), on_problem)
    else:
        yield from _read_files([path], on_problem)


def detect_format(path: str) -> str:
    """``maildir``, ``mh``, ``directory``, ``tar``, ``compressed``, ``mbox`` or ``message``."""
    if os.path.isdir(path):
        if os.path.isdir(os.path.join(path, "cur")) or os.path.isdir(os.path.join(path, "new")):
            return "maildir"
        names = [n for n in os.listdir(path) if not n.startswith(".")]
        if os.path.exists(os.path.join(path, ".mh_sequences")) or (
            names and all(n.isdigit() for n in names)
        ):
            return "mh"
        return "directory"
    try:
        with _open(path) as handle:
            tar_mode, opener = _sniff(handle)
            if tar_mode is not None:
                return "tar"
            if opener is not None:
                return "compressed"
            head = handle.read(5)
    except (OSError, EOFError, lzma.LZMAError, zlib.error):
        return "message"
    return "mbox" if head == b"From " else "message"


def _sniff(handle: BinaryIO) -> tuple[str | None, Opener | None]:
    """(tarfile mode if the file is a tar archive, else None; decompressor or None),
    from the first bytes, with the handle rewound. Not ``tarfile.is_tarfile``: it also
    tries LZMA's headerless format on any file, which takes a file of zeros for an empty
    archive after decoding all of it (``/proc/self/pagemap``: for ever)."""
    head = handle.read(512)
    handle.seek(0)
    for magic, opener, suffix in _COMPRESSED:
        if head.startswith(magic):
            with opener(handle) as stream:
                inner = read_at_most(stream, 512)
            handle.seek(0)
            return (f"r:{suffix}" if _tar_header(inner) else None), opener
    return ("r:" if _tar_header(head) else None), None


def _tar_header(block: bytes) -> bool:
    """Is ``block`` a tar header with a valid checksum (the start of a tar archive)?"""
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.TarError:
        return False
    return True


def _listdir(folder: str, on_problem: ProblemHandler) -> list[str]:
    """The names in ``folder``; none, reported, when it cannot be listed."""
    try:
        return os.listdir(folder)
    except OSError as exc:
        on_problem(folder, f"cannot read the directory: {exc.strerror or exc}")
        return []


def _plain_files(folder: str, on_problem: ProblemHandler) -> list[str]:
    return [
        os.path.join(folder, n)
        for n in sorted(_listdir(folder, on_problem))
        if not n.startswith(".") and os.path.isfile(os.path.join(folder, n))
    ]


def _walk(root: str, on_problem: ProblemHandler) -> Iterator[str]:
    def unreadable(exc: OSError) -> None:  # os.walk skips such a directory silently
        on_problem(exc.filename or root, f"cannot read the directory: {exc.strerror or exc}")

    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield os.path.join(folder, name)


def _regular(name: str, on_problem: ProblemHandler) -> bool:
    """A regular file (symlinks followed)? A FIFO would block the reader for ever and a
    device never ends, so anything else is reported and skipped."""
    try:
        mode = os.stat(name).st_mode
    except OSError as exc:
        on_problem(name, f"cannot read: {exc.strerror or exc}")
        return False
    if not stat.S_ISREG(mode):
        on_problem(name, "not a regular file (a pipe, socket or device): save the mail "
                         "to a file first")
        return False
    return True


def _read_files(files: Iterable[str], on_problem: ProblemHandler) -> Iterator[tuple[str, bytes]]:
    for name in files:
        if not _regular(name, on_problem):
            continue
        try:
            with _open(name) as handle:
                tar_mode, opener = _sniff(handle)
                if tar_mode is not None:
                    yield from _read_tar(name, "", on_problem, handle, tar_mode)
                elif opener is not None:
                    with opener(handle) as stream:
                        yield from _split_stream(name, stream, on_problem)
                else:
                    yield from _split_stream(name, handle, on_problem)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            on_problem(name, f"cannot read: {getattr(exc, 'strerror', None) or exc}")


def _read_tar_prefix(archive: str, prefix: str, on_problem: ProblemHandler
                     ) -> Iterator[tuple[str, bytes]]:
    """The members under ``prefix`` of the tar archive ``archive`` (``ARCHIVE#PREFIX``)."""
    if not _regular(archive, on_problem):
        return
    try:
        with _open(archive) as handle:
            tar_mode, _ = _sniff(handle)
            if tar_mode is None:
                on_problem(archive, f"not a tar archive, so '#{prefix}' selects nothing")
                return
            yield from _read_tar(archive, prefix, on_problem, handle, tar_mode)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        on_problem(archive, f"cannot read: {getattr(exc, 'strerror', None) or exc}")


def _read_tar(archive: str, prefix: str, on_problem: ProblemHandler, handle: BinaryIO,
              mode: str) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(None, mode, fileobj=handle) as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
            if prefix:
                members = [m for m in members if (m.name + "/").startswith(prefix + "/")]
                if not members:
                    on_problem(archive, f"has no files under '{prefix}' (ARCHIVE#PREFIX)")
            for member in members:
                parts = member.name.split("/")
                if any(p.startswith(".") for p in parts):
                    continue
                stream = tar.extractfile(member)
                if stream is None:
                    continue
                yield from _split_stream(f"{archive}#{member.name}", stream, on_problem)
    except (OSError, EOFError, tarfile.TarError, lzma.LZMAError, zlib.error) as exc:
        on_problem(archive, f"cannot read archive: {exc}")


def _split_stream(name: str, handle: BinaryIO, on_problem: ProblemHandler
                  ) -> Iterator[tuple[str, bytes]]:
    """One message, or several if the stream is an mbox.

    A ``Content-Length`` header (mboxcl2: From lines in bodies are not escaped) is
    honoured as mutt does, when it holds: a separator-like line inside the declared
    body is body text if the body ends exactly there, followed by a blank line, a From
    line or the end of the file; otherwise the header is wrong and every separator
    counts."""
    first = handle.read(5)
    if first != b"From ":
        rest = read_at_most(handle, MAX_MESSAGE_BYTES - len(first))
        raw = first + rest
        if _check(name, raw, on_problem):
            yield name, raw
        return
    count = 0

    def emit(parts: list[bytes]) -> Iterator[tuple[str, bytes]]:
        nonlocal count
        count += 1
        label = f"{name}:{count}"
        raw = b"".join(parts)
        if _check(label, raw, on_problem):
            yield label, raw

    chunks: list[bytes] = [first]
    previous_blank = False
    at_line_start = False  # the first line's "From " is read, its rest follows
    size = len(first)
    in_header = True  # the From line and the header section of the current message
    length: int | None = None  # its Content-Length while not yet confirmed or refuted
    body = 0  # bytes of its body so far
    inside: list[int] = []  # chunk numbers of separator-like lines inside that length
    confirming = False  # the body has its declared length: the next line tells

    def refute() -> Iterator[tuple[str, bytes]]:
        """The Content-Length was wrong: split at the separators it covered."""
        nonlocal chunks, length, inside, confirming
        starts = [0, *inside]
        for begin, end in zip(starts, inside, strict=False):
            yield from emit(chunks[begin:end])
        chunks = chunks[starts[-1]:]
        length, inside, confirming = None, [], False

    while piece := handle.readline(MAX_LINE_PIECE):
        starts_line, at_line_start = at_line_start, piece.endswith(b"\n")
        separator = starts_line and piece.startswith(b"From ") and bool(_FROM_LINE.match(piece))
        if confirming:
            if piece in (b"\n", b"\r\n") or separator:
                length, inside, confirming = None, [], False  # it holds
            else:
                yield from refute()
        if separator and previous_blank and length is not None and body < length \
                and size < MAX_MESSAGE_BYTES:
            inside.append(len(chunks))  # body text if the length holds
        elif separator and previous_blank:
            if inside:
                yield from refute()
            yield from emit(chunks)
            chunks, size = [piece], len(piece)
            in_header, length, body = True, None, 0
            previous_blank = False
            continue
        if size < MAX_MESSAGE_BYTES:  # beyond it the message is cut, not kept whole
            chunks.append(piece)
            size += len(piece)
        if in_header:
            if starts_line and piece in (b"\n", b"\r\n"):
                in_header = False
            elif starts_line and piece[:15].lower() == b"content-length:":
                value = piece[15:].strip()
                length = int(value) if value.isdigit() and len(value) < 19 else None
        elif length is not None and not confirming:
            body += len(piece)
            if body > length or (body == length and not at_line_start):
                yield from refute()
            elif body == length:
                confirming = True
        previous_blank = starts_line and piece in (b"\n", b"\r\n")
    if inside and not confirming:  # the file ended inside the declared body
        yield from refute()
    if count:
        yield from emit(chunks)
    else:  # one message: named after the file alone
        raw = b"".join(chunks)
        if _check(name, raw, on_problem):
            yield name, raw


def _check(name: str, raw: bytes, on_problem: ProblemHandler) -> bool:
    """Is this plausibly an RFC 822 message? Report it if not."""
    body = raw
    if body.startswith(b"From "):
        newline = body.find(b"\n")
        body = b"" if newline < 0 else body[newline + 1 :]
    body = body.lstrip(b"\r\n")
    if not body:
        on_problem(name, "empty message")
        return False
    if not _HEADER_START.match(body[:1000]):
        on_problem(name, "does not look like a mail message (no header at the start)")
        return False
    return True

"""Per-message decoding state: the expansion quota, the deadline, the private spool directory.

Every byte a decoder produces is written through :meth:`DecodeContext.writer`. The writer
counts it against the quota and the deadline *as it is produced* (never trusting sizes
an archive header claims), hashes it, and keeps it in memory or, above the spool
threshold, in a file inside the message's private temporary directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from decoders.base import LimitExceeded, Limits, SpoolFailed

if TYPE_CHECKING:
    from decoders.base import Child
    from decoders.mimeutil import KnownHeader

CHUNK = 64 * 1024


@dataclass(slots=True)
class Blob:
    """Bytes of one part: in memory (``data``) or spooled to ``path``; never both."""

    size: int
    sha256: str
    data: bytes | None = None
    path: str | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        with open(self.path, "rb") as fh:
            return fh.read()

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")  # noqa: SIM115 - the caller closes it


def _spool_failed(ctx: DecodeContext, exc: OSError) -> SpoolFailed:
    root = ctx.tmp_root or tempfile.gettempdir()
    return SpoolFailed(f"the temporary directory {root} did not take a part: "
                       f"{exc.strerror or exc}")


class BlobWriter:
    """Collects one child's bytes; raises :class:`LimitExceeded` when a limit is hit."""

    def __init__(self, ctx: DecodeContext, counted: bool = True) -> None:
        self._ctx = ctx
        self._counted = counted
        self._buf = io.BytesIO()
        self._file: BinaryIO | None = None
        self._path: str | None = None
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if not n:
            return 0
        if self._counted:
            self._ctx.charge(n)
        self._hash.update(data)
        self.size += n
        if self._file is None and self._ctx.should_spool(self.size):
            self._spool()
        if self._file is not None:
            try:
                self._file.write(data)
            except OSError as exc:
                raise _spool_failed(self._ctx, exc) from exc
        else:
            self._buf.write(data)
        return n

    def copy_from(self, stream: BinaryIO, chunk: int = CHUNK) -> None:
        """Copy a readable stream into the blob, chunk by chunk."""
        while True:
            data = stream.read(chunk)
            if not data:
                return
            self.write(data)

    def _spool(self) -> None:
        directory = self._ctx.spool_dir()
        if directory is None:
            return
        try:
            fd, self._path = tempfile.mkstemp(prefix="part-", dir=directory)
            self._file = os.fdopen(fd, "wb")
            self._file.write(self._buf.getvalue())
        except OSError as exc:
            raise _spool_failed(self._ctx, exc) from exc
        self._buf = io.BytesIO()

    def finish(self) -> Blob:
        digest = self._hash.hexdigest()
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:  # the buffered rest did not fit
                raise _spool_failed(self._ctx, exc) from exc
            return Blob(self.size, digest, path=self._path)
        data = self._buf.getvalue()
        self._ctx.in_memory += len(data)
        return Blob(self.size, digest, data=data)

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # a full disk: the buffered rest is lost
                self._file.close()
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)


class DecodeContext:
    """Shared state of one :func:`decoders.unpack.unpack` call."""

    def __init__(self, limits: Limits, message_size: int, tmp_root: str | None = None) -> None:
        self.limits = limits
        self.quota = limits.quota(message_size)
        self.produced = 0
        self.in_memory = 0
        self.deadline = time.monotonic() + limits.time_budget
        self.encrypted_names: list[str] = []
        self.ambiguities: dict[int, str] = {}  # part index -> why its MIME is ambiguous
        self.known_header: KnownHeader | None = None  # the top-level section, parsed
        self._tmp_root = tmp_root
        self._tmpdir: str | None = None

    @property
    def remaining(self) -> int:
        return max(0, self.quota - self.produced)

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded("time", f"{self.limits.time_budget:g}s")

    def charge(self, n: int) -> None:
        """Account for ``n`` produced bytes; raise once the quota or deadline is exceeded."""
        self.produced += n
        if self.produced > self.quota:
            raise LimitExceeded("quota", f"{self.quota} bytes")
        self.check_time()

    def should_spool(self, size: int) -> bool:
        lim = self.limits
        return size > lim.spool_threshold or self.in_memory + size > lim.max_memory

    def spool_dir(self) -> str | None:
        """The private temporary directory, created on first use (None if impossible)."""
        if self._tmpdir is None:
            try:
                self._tmpdir = tempfile.mkdtemp(prefix="scanner-decode-", dir=self._tmp_root)
            except OSError:
                return None
        return self._tmpdir

    def mark_encrypted(self, part: object, member: str | None = None) -> None:
        """Record that ``part`` (or its ``member``) is encrypted and could not be checked."""
        flags = getattr(part, "flags", None)
        if isinstance(flags, set):
            flags.add("encrypted")
        if member:
            self.encrypted_names.append(member)

    def name_only(self, part: object, name: str | None) -> Child | None:
        """A child for an encrypted member: no bytes (none could be read), but its name,
        so banned-name rules still apply to it (``setup.exe`` in an encrypted zip is
        banned, not only unchecked). Also marks ``part`` encrypted."""
        from decoders.base import Child

        self.mark_encrypted(part, name)
        if not name:
            return None
        return Child(blob=self.blob(b""), name=name, flags={"encrypted-member"})

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def blob(self, chunks: bytes | Iterable[bytes], counted: bool = True) -> Blob:
        """Store bytes (or an iterable of chunks) as a blob, counted unless it is input."""
        w = BlobWriter(self, counted)
        try:
            if isinstance(chunks, bytes | bytearray | memoryview):
                for i in range(0, len(chunks), CHUNK):
                    w.write(chunks[i : i + CHUNK])
            else:
                for chunk in chunks:
                    w.write(chunk)
        except BaseException:
            w.discard()
            raise
        return w.finish()

    def stream_blob(self, stream: BinaryIO) -> Blob:
        """Store everything readable from ``stream`` as a counted blob."""
        w = self.writer()
        try:
            w.copy_from(stream)
        except BaseException:
            w.discard()
            raise
        return w.finish()

    @property
    def tmp_root(self) -> str | None:
        """Where the private temporary directory is made (None: the system's default)."""
        return self._tmp_root

    @property
    def tmpdir(self) -> str | None:
        return self._tmpdir

    def cleanup(self) -> None:
        if self._tmpdir is not None:
            import shutil

            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

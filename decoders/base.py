"""The decoder contract: the ``Decoder`` protocol, the ``Child`` it yields, ``Limits``, errors.

A decoder turns one part (a zip file, a MIME message, a gzip stream, ...) into its child
parts. It names the short file types it handles (see :mod:`decoders.filetype`); the
unpacker gives each part to the first registered decoder whose ``handles`` contains the
part's detected type. Decoders never write files themselves: every byte they produce goes
through :meth:`decoders.context.DecodeContext.writer`, which counts it against the limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from decoders.context import Blob, DecodeContext
    from decoders.part import Part


@dataclass(frozen=True, slots=True)
class Limits:
    """Decoding limits (amavis's Debian defaults); every size is counted on produced bytes."""

    max_depth: int = 14
    max_parts: int = 1500
    min_quota: int = 100 * 1024
    min_factor: int = 5
    max_quota: int = 300 * 1024 * 1024
    max_factor: int = 500
    time_budget: float = 30.0
    spool_threshold: int = 1024 * 1024
    max_memory: int = 64 * 1024 * 1024

    def quota(self, size: int) -> int:
        """The expansion quota for a message of ``size`` bytes (amavis's formula)."""
        return max(
            self.min_quota,
            size * self.min_factor,
            min(self.max_quota, size * self.max_factor),
        )


@dataclass(slots=True)
class Child:
    """One part produced by a decoder: its bytes plus what the container said about it."""

    blob: Blob
    name: str | None = None
    declared_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    text: str | None = None
    html: str | None = None  # an HTML leaf's decoded markup; its text is rendered on demand
    detected_type: str | None = None
    aliases: tuple[str, ...] = ()  # other names the container gives the same bytes


@runtime_checkable
class Decoder(Protocol):
    """What a decoder plug-in provides (registered under the ``scanner.decoders`` group).

    Optional extras: ``order`` (int, lower is tried first, default 100) and
    ``wants(part) -> bool``, a cheap test for decoders of common types (plain text,
    HTML, executables) that usually find nothing; a part it declines goes to the next
    decoder of its type, or stays a leaf (never counting against the depth limit).
    """

    name: str
    handles: frozenset[str]

    def decode(self, part: Part, ctx: DecodeContext) -> Iterable[Child]:
        """Yield the children of ``part``; may add flags to ``part`` (encrypted, macro...)."""
        ...


class DecodeError(Exception):
    """Base class of the errors a decoder raises on purpose."""


class CorruptPart(DecodeError):
    """The part is damaged or not what its type says; decoding goes on with the rest."""


class Unsupported(DecodeError):
    """The part uses a feature (compression method...) no available library reads."""


class LimitExceeded(DecodeError):
    """A decoding limit was hit; ``kind`` is depth, files, quota or time."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind} limit exceeded{': ' + detail if detail else ''}")
        self.kind = kind
        self.detail = detail


class SpoolFailed(BaseException):
    """The private temporary directory did not take a part's bytes (disk full, quota,
    I/O error): our failure, not the message's, so it is no ``DecodeError`` and not
    ``DECODE_FAIL``; :func:`decoders.unpack.unpack` stops and reports
    ``DECODE_SPOOL_FAIL``, which defers the message. A ``BaseException`` because
    decoders turn a library's ``OSError`` or ``Exception`` into :class:`CorruptPart`."""


LIMIT_SYMBOLS = {
    "depth": "DECODE_LIMIT_DEPTH",
    "files": "DECODE_LIMIT_FILES",
    "quota": "DECODE_LIMIT_QUOTA",
    "time": "DECODE_LIMIT_TIME",
}

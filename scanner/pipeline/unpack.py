"""Unpack stage: expand the raw message into the decoders' part tree, off the event loop.

The stage hands ``task.raw`` to :func:`decoders.unpack.unpack` in the worker's CPU
thread pool, stores the parts and decoder hits on the Task, and returns the result so
the caller can remove its private temporary directory when the message is done.
:func:`unpack_now` is the same stage run in the calling thread, with the settings the
processor reads from the configuration, for the command-line tools (``scanner rules
test``) that must see the part tree the daemon's checks see.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from decoders.base import Decoder, Limits
from decoders.mimeutil import KnownHeader
from decoders.registry import load_decoders
from decoders.unpack import Unpacked, unpack
from scanner.config import Config
from scanner.pipeline.parse import header_section
from scanner.task import Task


def limits_from(config: Config) -> Limits:
    d = config.decode
    return Limits(max_depth=d.max_depth, max_parts=d.max_parts, min_quota=d.min_quota,
                  min_factor=d.min_factor, max_quota=d.max_quota, max_factor=d.max_factor,
                  time_budget=d.time_budget, spool_threshold=d.spool_threshold)


def tmp_root(config: Config) -> str | None:
    """Where the stage's private temporary directory goes (None: the system default)."""
    return config.server.tmp_dir or None


def _store(task: Task, result: Unpacked) -> Unpacked:
    task.parts = list(result.parts)
    for hit in result.hits:
        task.add_hit(hit)
    return result


async def unpack_task(task: Task, run_cpu: Callable[..., Awaitable[Any]], limits: Limits,
                      decoders: Sequence[Decoder], tmp_root: str | None) -> Unpacked:
    """Fill ``task.parts`` and add decoder hits; the caller closes the result. The MIME
    decoder takes the parse stage's ``task.message`` (made of ``task.raw``) for the
    top-level header section instead of parsing it again."""
    known = KnownHeader(header_section(task.raw), task.message) \
        if task.message is not None else None
    return _store(task, await run_cpu(unpack, task.raw, limits, decoders, tmp_root, known))


def unpack_now(task: Task, config: Config,
               decoders: Sequence[Decoder] | None = None) -> Unpacked | None:
    """The unpack stage as the processor runs it for ``config``, in this thread: None
    (``task.parts`` left empty) when ``decode.enabled`` is off, as in the daemon; else
    the result, which the caller closes."""
    if not config.decode.enabled:
        return None
    return _store(task, unpack(task.raw, limits_from(config),
                               load_decoders() if decoders is None else decoders,
                               tmp_root(config)))

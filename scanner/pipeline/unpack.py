"""Unpack stage: expand the raw message into the decoders' part tree, off the event loop.

The stage hands ``task.raw`` to :func:`decoders.unpack.unpack` in the worker's CPU
thread pool, stores the parts and decoder hits on the Task, and returns the result so
the caller can remove its private temporary directory when the message is done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from decoders.base import Decoder, Limits
from decoders.unpack import Unpacked, unpack
from scanner.config import Config
from scanner.task import Task


def limits_from(config: Config) -> Limits:
    d = config.decode
    return Limits(max_depth=d.max_depth, max_parts=d.max_parts, min_quota=d.min_quota,
                  min_factor=d.min_factor, max_quota=d.max_quota, max_factor=d.max_factor,
                  time_budget=d.time_budget, spool_threshold=d.spool_threshold)


async def unpack_task(task: Task, run_cpu: Callable[..., Awaitable[Any]], limits: Limits,
                      decoders: Sequence[Decoder], tmp_root: str | None) -> Unpacked:
    """Fill ``task.parts`` and add decoder hits; the caller closes the result."""
    result: Unpacked = await run_cpu(unpack, task.raw, limits, decoders, tmp_root)
    task.parts = list(result.parts)
    for hit in result.hits:
        task.add_hit(hit)
    return result

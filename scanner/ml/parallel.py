"""Independent training jobs on every core: forked processes that inherit the corpus.

Fitting a linear learner uses one core (liblinear, SGD). A model is several independent
fits (the blend on all the mail, then one per calibration fold) and a cross-validation
one model per fold, so they can run side by side. The processes are forked, so the
corpus they read is inherited, never pickled; only the job numbers go out and the
results (weights, decisions, probabilities) come back. Each job is as deterministic as
before, so the model file stays byte-identical whatever the number of processes.
Memory: each running job holds its own training matrix.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_inherited: tuple[Callable[[Any, Any], Any], Any] | None = None


def fork_map(func: Callable[[Any, T], R], state: Any, items: Sequence[T], jobs: int
             ) -> Iterator[tuple[int, R]]:
    """``(index, func(state, item))`` for every item, in the order they finish, from up
    to ``jobs`` forked processes; in this process when ``jobs`` <= 1 or one item."""
    if jobs <= 1 or len(items) <= 1:
        for index, item in enumerate(items):
            yield index, func(state, item)
        return
    global _inherited
    _inherited = (func, state)
    try:
        with multiprocessing.get_context("fork").Pool(min(jobs, len(items))) as pool:
            yield from pool.imap_unordered(_run, list(enumerate(items)))
    finally:
        _inherited = None


def _run(job: tuple[int, Any]) -> tuple[int, Any]:
    assert _inherited is not None, "fork_map's state is inherited by forking"
    func, state = _inherited
    index, item = job
    return index, func(state, item)

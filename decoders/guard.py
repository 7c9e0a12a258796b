"""A step budget for pure-Python parsing libraries that trust counts in their input.

Some libraries loop as many times as a field of the file says (tnefparse reads a
property count and a multi-value count and loops that often, past the end of the data,
appending an object each time): a 4 KB attachment can then run for minutes and take
gigabytes. :func:`step_budget` traces the library's Python lines and calls while it
runs and stops it with :class:`BudgetExceeded` after ``max_steps`` of them or at the
decoding deadline. ``BudgetExceeded`` derives from ``BaseException`` on purpose: such
libraries wrap their loops in ``except Exception``, which must not swallow it.

Tracing makes the guarded call several times slower, so it is used only for rare
formats, never on the hot path (MIME, zip). A debugger or coverage tool that uses
``sys.settrace`` gets its tracer back afterwards but sees nothing inside the call.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

CHECK_CLOCK_EVERY = 4096


class BudgetExceeded(BaseException):
    """The guarded call used up its steps or ran past the deadline."""


@contextmanager
def step_budget(max_steps: int, deadline: float) -> Iterator[None]:
    """Run the body with at most ``max_steps`` traced Python steps, until ``deadline``."""
    steps = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal steps
        steps += 1
        if steps > max_steps:
            raise BudgetExceeded(f"more than {max_steps} parser steps")
        if not steps % CHECK_CLOCK_EVERY and time.monotonic() > deadline:
            raise BudgetExceeded("decoding time budget used up")
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(previous)

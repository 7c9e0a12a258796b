"""Suite-wide test settings: Hypothesis profiles, and the scriptable next hop.

Local runs draw new random examples every time (that is how the decoder property tests
found their bugs). CI sets ``HYPOTHESIS_PROFILE=ci`` (``.ci/run``): the examples are
derived from each test's name instead, so a landing is judged on the same inputs every
time and a failure there can be re-run exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A scriptable next hop (``scanner.testing.sink``) on a free loopback port."""
    s = Sink(free_port()).start()
    yield s
    s.stop()

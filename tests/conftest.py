"""Suite-wide test settings: Hypothesis profiles.

Local runs draw new random examples every time (that is how the decoder property tests
found their bugs). CI sets ``HYPOTHESIS_PROFILE=ci`` (``.ci/run``): the examples are
derived from each test's name instead, so a landing is judged on the same inputs every
time and a failure there can be re-run exactly.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

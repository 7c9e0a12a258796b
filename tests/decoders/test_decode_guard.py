"""The step budget around pure-Python parsers that trust counts in their input.

A TNEF attachment of a few dozen bytes whose MAPI block claims two billion values made
tnefparse loop past the end of the data, appending an object per turn, until the
machine ran out of memory (found by the property tests with 6,000 examples: 24 GB and
an OOM kill). Under the budget it stops at once: a decoding limit, message UNCHECKED.
"""

from __future__ import annotations

import struct
import time

import pytest

from decoders import Limits, unpack
from decoders.guard import BudgetExceeded, step_budget
from tests.decoders.builders import message

TNEF_SIGNATURE = 0x223E9F78
ATT_MAPI_PROPS = 0x9003
MULTI_VALUE_SHORT = 0x1002


def _tnef(mapi: bytes) -> bytes:
    obj = struct.pack("<BHHI", 1, ATT_MAPI_PROPS, 6, len(mapi)) + mapi
    obj += struct.pack("<H", sum(mapi) & 0xFFFF)
    return struct.pack("<IH", TNEF_SIGNATURE, 0) + obj + b"\0" * 16


HOSTILE = {
    # one multi-valued property claiming 2**31 - 1 values, none present
    "multi-value count": struct.pack("<IHHI", 1, MULTI_VALUE_SHORT, 1, 0x7FFFFFFF),
    # 2**32 - 1 properties claimed, none present: a tight loop without calls
    "property count": struct.pack("<I", 0xFFFFFFFF),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_hostile_tnef_counts_are_corrupt_not_a_hang(what: str) -> None:
    raw = message(("winmail.dat", _tnef(HOSTILE[what])))
    with unpack(raw, limits=Limits(time_budget=60.0)) as result:
        tnef = [p for p in result.parts if p.detected_type == "tnef"]
        assert tnef, [p.path_string() for p in result.parts]
        limit = [h for h in result.hits if h.symbol == "DECODE_LIMIT_TIME"]
        assert limit and "parser steps" in limit[0].options[0], result.hits
        assert result.unchecked  # a part went undecoded: never clean
        assert "DECODE_FAIL" not in result.symbols()


def test_budget_stops_a_loop_and_is_not_swallowed_by_except_exception() -> None:
    def stubborn() -> int:
        n = 0
        while True:
            try:
                n += 1
            except Exception:  # what careless libraries do
                n = 0

    with pytest.raises(BudgetExceeded), step_budget(10_000, time.monotonic() + 60):
        stubborn()


def test_budget_leaves_ordinary_work_alone_and_restores_the_tracer() -> None:
    import sys

    before = sys.gettrace()
    with step_budget(10_000, time.monotonic() + 60):
        total = sum(i for i in range(100))
    assert total == 4950
    assert sys.gettrace() is before

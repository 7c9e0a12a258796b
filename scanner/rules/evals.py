"""The few SpamAssassin ``eval:`` rules this engine runs itself.

SpamAssassin's plugins register Perl functions that rules call as ``eval:name(args)``;
this engine skips those rules (metas over them count them as not hit), except the
functions named here, which read what :class:`scanner.rules.views.MessageView` already
knows. Each takes the view and returns the rule's value (0: no hit).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Eval = Callable[[Any], float]

_CALL = re.compile(r"^eval:\s*(\w+)\s*\(\s*\)\s*$")


def check_relays_unparseable(view: Any) -> float:
    """Plugin/RelayEval.pm: 1 when a Received header could not be parsed."""
    return 1.0 if view.relays_unparseable else 0.0


EVALS: dict[tuple[str, str], Eval] = {
    ("header", "check_relays_unparseable"): check_relays_unparseable,
}
"""(rule kind, function) -> implementation; SpamAssassin registers these without
arguments."""


def find_eval(kind: str, text: str) -> Eval | None:
    """The implementation of an ``eval:`` rule's call, None if this engine has none."""
    m = _CALL.match(text)
    return EVALS.get((kind, m.group(1))) if m else None

"""from-amavis: amavis's disclaimer settings.

``$allow_disclaimers`` and ``$outbound_disclaimers_only`` become the policy keys of the
same names; the ``--disclaimer=FILE`` and ``--disclaimer-html=FILE`` arguments of
``@altermime_args_disclaimer`` become ``disclaimer_text`` and ``disclaimer_html``
(scanner adds the disclaimer itself, without altermime, so the other arguments have no
use). A policy bank that allows disclaimers is noted with what to write by hand.
"""

from __future__ import annotations

from typing import Any

from scanner.migrate.perlconf import UNREAD, Statement

FLAGS = {"$allow_disclaimers": "allow_disclaimers",
         "$outbound_disclaimers_only": "outbound_disclaimers_only"}
ARGS = "@altermime_args_disclaimer"
FILE_ARGS = {"--disclaimer": "disclaimer_text", "--disclaimer-html": "disclaimer_html"}
WHEN = ("amavis added a disclaimer only where %defang_maps_by_ccat names 'disclaimer'; "
        "scanner adds one wherever allow_disclaimers and a disclaimer file are set")


def map_disclaimers(last: dict[str, Statement], conv: Any, handled: set[str]) -> None:
    """Convert the disclaimer flags and files; note the banks that allow them."""
    for target, key in FLAGS.items():
        statement = last.get(target)
        if statement is None or statement.value is UNREAD:
            continue
        handled.add(target)
        value = statement.value not in (None, 0, "", "0")
        origin = f"{target} ({statement.where})"
        conv.set("policy", key, value, f"{origin}: {WHEN}" if key == "allow_disclaimers"
                 else origin)
    _files(last.get(ARGS), conv, handled)
    for target, statement in last.items():
        if target.startswith("$policy_bank{") and "allow_disclaimers" in statement.text:
            handled.add(target)
            conv.note(statement, "this bank allows disclaimers: write allow_disclaimers = "
                      "true (and outbound_disclaimers_only if it sets it) in "
                      "[policy_banks.NAME] with its other keys (README \"Policy\", "
                      "Disclaimers)")


def _files(statement: Statement | None, conv: Any, handled: set[str]) -> None:
    """``--disclaimer=FILE`` -> disclaimer_text, ``--disclaimer-html=FILE`` ->
    disclaimer_html; ``_OPTION_`` in them works as in amavis (policy.disclaimer_options
    is amavis's @disclaimer_options_bysender_maps)."""
    if statement is None or not isinstance(statement.value, list):
        return
    handled.add(ARGS)
    found = []
    for arg in statement.value:
        name, _, path = str(arg).partition("=")
        if name in FILE_ARGS and path:
            conv.set("policy", FILE_ARGS[name], path, f"{ARGS} {name} ({statement.where})")
            found.append(name)
    if len(found) < len(statement.value):
        conv.note(statement, "scanner adds disclaimers itself (no altermime): only "
                  "--disclaimer=FILE and --disclaimer-html=FILE are converted"
                  + ("" if found else " and there are none here"))

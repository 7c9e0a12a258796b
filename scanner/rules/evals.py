"""The few SpamAssassin ``eval:`` rules this engine runs itself.

SpamAssassin's plugins register Perl functions that rules call as ``eval:name(args)``;
this engine skips those rules (metas over them count them as not hit), except the
functions named here, which read what :class:`scanner.rules.views.MessageView` already
knows. Each takes the view and returns the rule's value (0: no hit).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from email.utils import mktime_tz, parsedate_tz
from typing import Any

Eval = Callable[[Any], float]

_CALL = re.compile(r"^eval:\s*(\w+)\s*\(\s*\)\s*$")


def check_relays_unparseable(view: Any) -> float:
    """Plugin/RelayEval.pm: 1 when a Received header could not be parsed."""
    return 1.0 if view.relays_unparseable else 0.0


_HTML_START = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|font|table|center|div|p)\b", re.I)
_LEADING = b"\xef\xbb\xbf \t\r\n"


def check_html_as_text(view: Any) -> float:
    """This project's: 1 when a text/plain part (declared, or a message without any
    Content-Type) starts with HTML markup. A mail client that writes HTML says so;
    bulk-mail programs that paste a web page into a bare message do not. Attachments
    and parts named *.html (which SpamAssassin reads as HTML) do not count."""
    for part in view.leaves:
        if part.effective_type != "text/plain":
            continue
        disposition = part.headers.raw("Content-Disposition")
        if disposition and disposition[-1].strip().lower().startswith(b"attachment"):
            continue
        if _HTML_START.match(part.data[:512].lstrip(_LEADING)):
            return 1.0
    return 0.0


FUTURE_HOURS = 6


def _epoch(value: bytes) -> float | None:
    try:  # parsedate_tz has raised on odd input in some Python releases
        parsed = parsedate_tz(" ".join(value.decode("latin-1").split()))
        return None if parsed is None else float(mktime_tz(parsed))
    except (OverflowError, ValueError, IndexError, TypeError):
        return None


def arrival(view: Any) -> float:
    """When the message reached this site: the date of the topmost Received header
    (the receiving MTA's own, written on arrival), else now."""
    for value in view.headers.raw("Received")[:1]:
        _, sep, date = value.rpartition(b";")
        when = _epoch(date) if sep else None
        if when is not None:
            return when
    return time.time()


def check_date_in_future(view: Any) -> float:
    """This project's (SpamAssassin has its DATE_IN_FUTURE_* bands): 1 when Date: is
    more than ``FUTURE_HOURS`` later than the message's arrival. Bulk senders date
    their mail ahead so that it sorts at the top of a mailbox; a client's wrong time
    zone is off by whole hours, too, which is why a few hours are allowed."""
    values = view.headers.raw("Date")
    sent = _epoch(values[0]) if values else None
    return 1.0 if sent is not None and sent - arrival(view) > FUTURE_HOURS * 3600 else 0.0


EVALS: dict[tuple[str, str], Eval] = {
    ("header", "check_relays_unparseable"): check_relays_unparseable,
    ("rawbody", "check_html_as_text"): check_html_as_text,
    ("header", "check_date_in_future"): check_date_in_future,
}
"""(rule kind, function) -> implementation; SpamAssassin registers these without
arguments."""


def find_eval(kind: str, text: str) -> Eval | None:
    """The implementation of an ``eval:`` rule's call, None if this engine has none."""
    m = _CALL.match(text)
    return EVALS.get((kind, m.group(1))) if m else None

"""Address header parsing that a crafted header cannot make fail.

``email.utils.parseaddr`` and ``getaddresses`` read a comment inside a comment by
recursion: a From header with a few hundred nested ``(`` raised RecursionError, which
failed the classifier and the rules (a tempfail for every delivery attempt, since the
message never changes) and the sender-authentication check. Such a header is read here
as one without addresses, as the callers already read a header the parser rejects.
"""

from __future__ import annotations

from email.utils import getaddresses, parseaddr


def parse_address(value: str) -> tuple[str, str]:
    """``email.utils.parseaddr(value)``, or ``("", "")`` when it cannot be parsed."""
    try:
        return parseaddr(value)
    except (RecursionError, ValueError, IndexError):
        return "", ""


def parse_addresses(values: list[str]) -> list[tuple[str, str]]:
    """``email.utils.getaddresses(values)``, or ``[]`` when they cannot be parsed."""
    try:
        return getaddresses(values)
    except (RecursionError, ValueError, IndexError):
        return []

"""Address header parsing that a crafted header cannot make fail.

``email.utils.parseaddr`` and ``getaddresses`` read a comment inside a comment by
recursion: a From header with a few hundred nested ``(`` raised RecursionError, which
failed the classifier and the rules (a tempfail for every delivery attempt, since the
message never changes) and the sender-authentication check. Such a header is read here
as one without addresses, as the callers already read a header the parser rejects.
"""

from __future__ import annotations

import inspect
from email.utils import getaddresses, parseaddr

_HAS_STRICT = "strict" in inspect.signature(parseaddr).parameters
"""Whether this Python's ``parseaddr`` has the ``strict`` switch of the CVE-2023-27043 fix
(upstream 3.11.10; Debian 12 backported it to its 3.11.2). Strict parsing gives
``("", "")`` for a value with several addresses or a malformed one, where the older
parser gave its first address."""


def parse_address(value: str, strict: bool = True) -> tuple[str, str]:
    """``email.utils.parseaddr(value)``, or ``("", "")`` when it cannot be parsed.

    ``strict=False`` asks for the lenient reading on every Python (the first address of
    ``a@x, b@y``), the one Pythons without the CVE-2023-27043 fix always give: for the
    classifier, whose tokens must not change with the interpreter's patch level. The
    default is the interpreter's own reading."""
    try:
        if not strict and _HAS_STRICT:
            return parseaddr(value, strict=False)  # type: ignore[call-arg]
        return parseaddr(value)
    except (RecursionError, ValueError, IndexError):
        return "", ""


def parse_addresses(values: list[str]) -> list[tuple[str, str]]:
    """``email.utils.getaddresses(values)``, or ``[]`` when they cannot be parsed."""
    try:
        return getaddresses(values)
    except (RecursionError, ValueError, IndexError):
        return []


def split_localpart(local: str, delimiter: str) -> tuple[str, str]:
    """``("user", "+ext")`` for ``user+ext``: the local part and its address extension
    (with its delimiter), read as amavis (and Postfix) read them. ``delimiter`` is a set
    of characters (Postfix's ``recipient_delimiter = +-`` means either); the extension
    starts at the first of them after at least one character; ``postmaster``,
    ``mailer-daemon`` and ``double-bounce`` are never split, nor ``owner-list`` and
    ``list-request`` when ``-`` is a delimiter. ``(local, "")`` when there is none."""
    if not delimiter or local.lower() in ("postmaster", "mailer-daemon", "double-bounce"):
        return local, ""
    if "-" in delimiter and (local[:6].lower() == "owner-" and len(local) > 6
                             or local[-8:].lower() == "-request" and len(local) > 8):
        return local, ""
    at = next((i for i, ch in enumerate(local) if i and ch in delimiter), -1)
    return (local, "") if at < 0 else (local[:at], local[at:])

"""Database URLs as logs and messages show them: without their passwords.

``policy.sql_lookup`` and ``quarantine.index`` may carry a PostgreSQL password, in the
URL's user information (``postgresql://user:secret@host/db``) or as a parameter
(``postgresql:///db?host=/run/postgresql&password=secret``, or a ``password=secret``
word of a libpq key/value string). :func:`redact` replaces every such password with
``***`` wherever a URL is printed: log lines, error messages, ``scanner config show``.
"""

from __future__ import annotations

import re

MASK = "***"
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*):[^/?#]*@")
_PARAMETER = re.compile(r"(?P<head>(?:^|[?&\s])password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^&\s]*)",
                        re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with each password it holds replaced by ``***``: ``postgresql://u:***@h/d``,
    ``...?password=***``; a URL without one is returned unchanged."""
    url = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", url, count=1)
    return _PARAMETER.sub(lambda m: f"{m['head']}{MASK}", url)


def is_postgresql(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return url.startswith(("postgresql://", "postgres://"))

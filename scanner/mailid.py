"""Message identifiers: amavis-style 12-character mail_id (72 random bits) and log ids."""

from __future__ import annotations

import base64
import os
import secrets


def new_mail_id() -> str:
    """12 characters of URL-safe base64 over 72 random bits (amavis's mail_id shape).

    Never starts with '-', so an id is never mistaken for a command-line option.
    """
    while True:
        mail_id = base64.b64encode(secrets.token_bytes(9), altchars=b"-_").decode("ascii")
        if not mail_id.startswith("-"):
            return mail_id


def new_secret_id() -> str:
    """A second, independent 72-bit id that authorises release of a quarantined mail."""
    return new_mail_id()


class LogIds:
    """``(PID-NN)`` prefixes: process id and request number within this process."""

    def __init__(self) -> None:
        self._count = 0

    def next(self) -> str:
        self._count += 1
        return f"{os.getpid():05d}-{self._count:02d}"

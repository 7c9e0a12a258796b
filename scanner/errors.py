"""The project's small exception hierarchy."""

from __future__ import annotations


class ScannerError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(ScannerError):
    """The configuration file is missing, unreadable or invalid; the message names the key."""


class TempFail(ScannerError):
    """Something we depend on is temporarily unavailable; the message must be retried."""


class NextHopError(TempFail):
    """The next hop could not be reached or broke the conversation."""

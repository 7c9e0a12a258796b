"""Errors raised by the spam classifier library (``scanner.ml``)."""

from __future__ import annotations

from scanner.errors import ScannerError


class ModelError(ScannerError):
    """A model file is missing, unreadable, truncated, corrupt or not a scanner model.

    The message always names the file so an administrator can find it.
    """


class TrainingError(ScannerError):
    """Training cannot proceed (for example no readable mail, or only one class)."""

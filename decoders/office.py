"""Office helpers: VBA macro detection (oletools' olevba) and encryption detection.

Used by the OLE decoder (doc/xls/ppt) and for OOXML VBA projects (``vbaProject.bin``).
"""

from __future__ import annotations

import warnings

MAX_VBA_SCAN = 32 * 1024 * 1024


def has_macros(data: bytes, name: str | None = None) -> bool:
    """True when olevba finds VBA or XLM macros in an OLE or OOXML file."""
    if len(data) > MAX_VBA_SCAN:
        return False
    try:
        with warnings.catch_warnings():  # olevba uses deprecated pyparsing names
            warnings.simplefilter("ignore")
            from oletools.olevba import VBA_Parser

        parser = VBA_Parser(name or "part", data=data)
        try:
            return bool(parser.detect_vba_macros())
        finally:
            parser.close()
    except Exception:
        return False


def ole_encrypted(ole: object) -> bool:
    """True for password-protected Office documents (legacy or OOXML-in-OLE)."""
    try:
        from oletools.crypto import is_encrypted

        return bool(is_encrypted(ole))
    except Exception:
        return False

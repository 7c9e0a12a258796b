"""Disclaimer files: read (and checked) when the configuration is loaded.

``policy.disclaimer_text`` and ``policy.disclaimer_html`` name files; ``_OPTION_`` in a
name stands for a value of ``policy.disclaimer_options`` (amavis's
``@altermime_args_disclaimer`` with ``@disclaimer_options_bysender_maps``), so every
file a sender can select is checked at start: a missing one is a configuration error
naming the key and the file, not a deferred message later.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

from scanner.errors import ConfigError

PLACEHOLDER = "_OPTION_"
MAX_SIZE = 64 * 1024
"""A disclaimer file longer than this (bytes) is refused."""
_OPTION = re.compile(r"[A-Za-z0-9._+-]*")


def disclaimer_paths(path: str, options: list[str]) -> list[str]:
    """The files ``path`` names: one per option when it holds ``_OPTION_`` ('' too,
    what a sender without an option gets)."""
    if PLACEHOLDER not in path:
        return [path]
    return [path.replace(PLACEHOLDER, o) for o in dict.fromkeys(["", *options])]


def check_disclaimers(src: str, where: str, table: object, has_local_domains: bool,
                      other_options: list[str]) -> None:
    """The disclaimer keys of a policy table: readable UTF-8 files (for the options of
    this table and ``other_options``, those of the others), option words that are
    file-name words, and local_domains to say which senders are ours."""
    options = dict(getattr(table, "disclaimer_options", None) or {})
    for pattern, option in options.items():
        if "@" not in pattern:
            raise ConfigError(f"{src}: '{where}.disclaimer_options.\"{pattern}\"' never "
                              f"matches; write '@{pattern}', '@.{pattern}' or "
                              f"'user@{pattern}'")
        if not isinstance(option, str) or not _OPTION.fullmatch(option) or ".." in option:
            raise ConfigError(f"{src}: '{where}.disclaimer_options.\"{pattern}\"' = "
                              f"{option!r} is not a file-name word (letters, digits, "
                              "'.', '_', '+', '-')")
    for key in ("disclaimer_text", "disclaimer_html"):
        words = [*options.values(), *other_options]
        for path in disclaimer_paths(getattr(table, key, None) or "", words):
            if not path:
                continue
            try:
                read_disclaimer(path)
            except (OSError, ValueError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else exc
                raise ConfigError(f"{src}: '{where}.{key}': cannot use {path!r}: "
                                  f"{why}") from None
    if getattr(table, "allow_disclaimers", None) and not has_local_domains:
        raise ConfigError(f"{src}: '{where}.allow_disclaimers' needs 'policy.local_domains': "
                          "only mail from your domains gets a disclaimer, so list them")


def read_disclaimer(path: str) -> str:
    """The text of a disclaimer file (read again only when it changed on disk)."""
    if not os.path.isabs(path):
        raise ValueError("write an absolute path")
    st = os.stat(path)
    return _read(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)
def _read(path: str, mtime_ns: int, size: int) -> str:
    if size > MAX_SIZE:
        raise ValueError(f"{size} bytes, over {MAX_SIZE}")
    with open(path, "rb") as f:
        data = f.read(MAX_SIZE + 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    if not text.strip():
        raise ValueError("the file is empty")
    return text

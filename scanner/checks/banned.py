"""BANNED_FILE: parts whose name, declared MIME type or detected type is banned.

Wraps the rule engine of :mod:`scanner.banned` (amavis's Debian defaults: double
extensions, executables, CLSID names, MS download types, detected ``exe-ms``) as a
check over the decoded part tree, so a ban applies at any depth inside archives.
A hit's options name the part path and the rule; its category is BANNED.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from scanner.banned import build_rules, find_banned
from scanner.checks.base import CheckContext
from scanner.config.schema import opt
from scanner.errors import ConfigError
from scanner.task import Hit, Task


@dataclass(frozen=True, slots=True)
class BannedSettings:
    """Settings of the banned-file check ([checks.settings.banned])."""

    rules: tuple[dict[str, Any], ...] = opt(
        [], "site rules tried before the defaults: tables with match = name|type|mime, "
        "regex, action = ban|allow, inside = true|false")
    replace_defaults: bool = opt(False, "use only the site rules, not amavis's defaults")


class BannedFiles:
    """Ban parts by name, declared MIME type and detected type."""

    name: ClassVar[str] = "banned"
    description: ClassVar[str] = "Banned file names and types, at any depth"
    symbols: ClassVar[dict[str, str]] = {"BANNED_FILE": "a part matches a banned-file rule"}
    default_enabled: ClassVar[bool] = True
    kind: ClassVar[str] = "banned"
    Settings: ClassVar[type] = BannedSettings

    def __init__(self, settings: BannedSettings, context: CheckContext) -> None:
        try:
            self._rules = build_rules(settings.rules, settings.replace_defaults)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{context.config.source}: [checks.settings.banned] rules: {exc}") from None
        self._decoding = context.config.decode.enabled

    async def probe(self) -> str | None:
        """Said at start-up and by ``config check``: without decoding there are no parts,
        so no file is ever banned (ClamAV still scans the whole message)."""
        if self._decoding:
            return None
        return ("decode.enabled = false: attachments are not unpacked, so no file name or "
                "type is ever banned; turn decoding on or disable the banned check")

    async def run(self, task: Task) -> Iterable[Hit]:
        return find_banned(task.parts, self._rules)

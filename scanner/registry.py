"""Find checks through the ``scanner.checks`` entry point group and build them.

Built-in checks are registered the same way as third-party ones (pyproject.toml).
Duplicate names, and settings, ``enabled`` names or ``disabled`` patterns that name no
installed check, stop start-up.
"""

from __future__ import annotations

import fnmatch
import logging
from importlib.metadata import entry_points
from typing import Any

from scanner.checks.base import CheckContext
from scanner.config import Config
from scanner.config.schema import build, to_plain
from scanner.errors import ConfigError

log = logging.getLogger("scanner.registry")

GROUP = "scanner.checks"


def available_checks() -> dict[str, type]:
    """Every installed check class by name."""
    found: dict[str, type] = {}
    for ep in entry_points(group=GROUP):
        cls = ep.load()
        name = getattr(cls, "name", ep.name)
        if name in found:
            raise ConfigError(f"two checks are registered as '{name}': {found[name]} and {cls}")
        found[name] = cls
    return found


def _wanted(name: str, cls: type, config: Config) -> bool:
    checks = config.checks
    if any(fnmatch.fnmatchcase(name, pat) for pat in checks.disabled):
        return False
    if name in checks.enabled:
        return True
    return "*" in checks.enabled and bool(getattr(cls, "default_enabled", True))


def build_checks(config: Config, context: CheckContext) -> list:
    """Instantiate the enabled checks with their validated settings, in name order."""
    classes = available_checks()
    _check_names(config, classes)
    checks = []
    for name in sorted(classes):
        cls = classes[name]
        raw = config.checks.settings.get(name, {})
        settings = build(cls.Settings, raw, f"checks.settings.{name}", config.source)
        if not _wanted(name, cls, config):
            log.debug("check %s is disabled", name)
            continue
        checks.append(_construct(cls, settings, context, config.source))
    return checks


def _construct(cls: type, settings: Any, context: CheckContext, source: str) -> Any:
    """One check; a ConfigError it raises about its settings is given the file name."""
    try:
        return cls(settings, context)
    except ConfigError as exc:
        if str(exc).startswith(f"{source}:"):
            raise
        raise ConfigError(f"{source}: {exc}") from None


def effective_check_settings(config: Config) -> tuple[dict[str, Any], list[str]]:
    """The enabled checks' settings with the defaults filled in (validated as for
    :func:`build_checks`), as TOML-ready tables by check name; and the names of the
    installed checks the configuration leaves off."""
    classes = available_checks()
    _check_names(config, classes)
    tables: dict[str, Any] = {}
    off: list[str] = []
    for name in sorted(classes):
        if not _wanted(name, classes[name], config):
            off.append(name)
            continue
        raw = config.checks.settings.get(name, {})
        tables[name] = to_plain(build(classes[name].Settings, raw, f"checks.settings.{name}",
                                      config.source))
    return tables, off


def _check_names(config: Config, classes: dict[str, type]) -> None:
    """Every check a config names is installed (``disabled`` patterns match one)."""
    checks = config.checks
    installed = ", ".join(sorted(classes))
    named = [(f"checks.settings.{name}", name) for name in checks.settings]
    named += [(f"checks.enabled[{i}]", name) for i, name in enumerate(checks.enabled)]
    for key, name in named:
        if name != "*" and name not in classes:
            raise ConfigError(f"{config.source}: {key}: no check named '{name}' is "
                              f"installed; installed: {installed}")
    for i, pattern in enumerate(checks.disabled):
        if not any(fnmatch.fnmatchcase(name, pattern) for name in classes):
            raise ConfigError(f"{config.source}: checks.disabled[{i}]: '{pattern}' names no "
                              f"installed check (a name or a pattern such as 'dns*'); "
                              f"installed: {installed}")


def close_checks(checks: list) -> None:
    """Let every check that holds connections or files release them (``close()``)."""
    for check in checks:
        close = getattr(check, "close", None)
        if not callable(close):
            continue
        try:
            close()
        except Exception:
            log.exception("closing check %s failed", getattr(check, "name", check))

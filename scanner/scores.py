"""The score table: symbol -> weight, category and tempfail flag, kept as data.

Shipped as ``scanner/data/scores/*.toml`` (one file per check family, read in name
order); sites may add files that override entries.

Checks whose symbols come from data they load (a SpamAssassin rule set names its own
rules and carries their scores) declare those weights at run time in
:data:`PROVIDED`; a score-file entry for the same symbol still wins.
"""

from __future__ import annotations

import math
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from scanner.errors import ConfigError

CATEGORIES = ("", "VIRUS", "BANNED", "UNCHECKED", "BAD-HEADER", "OVERSIZED")


@dataclass(frozen=True, slots=True)
class SymbolDef:
    """What one symbol means to policy."""

    weight: float = 0.0
    description: str = ""
    category: str = ""
    tempfail: bool = False


class ProvidedWeights:
    """Symbol definitions declared at run time, per provider (e.g. the ``rules`` check).

    ``set(provider, defs)`` replaces everything that provider declared before (a
    reload); lookups see either the old or the new set, never a mix.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_provider: dict[str, dict[str, SymbolDef]] = {}
        self._merged: dict[str, SymbolDef] = {}

    def set(self, provider: str, defs: Mapping[str, SymbolDef]) -> None:
        with self._lock:
            self._by_provider[provider] = dict(defs)
            merged: dict[str, SymbolDef] = {}
            for name in sorted(self._by_provider):
                merged.update(self._by_provider[name])
            self._merged = merged

    def get(self, symbol: str) -> SymbolDef | None:
        return self._merged.get(symbol)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._merged


PROVIDED = ProvidedWeights()
"""This process's run-time symbol definitions (filled when checks are built)."""


@dataclass(frozen=True, slots=True)
class ScoreTable:
    """All known symbols plus the default for ``*_FAIL`` symbols.

    Lookup order: score files, then weights provided at run time, then the ``*_FAIL``
    default, else weight 0.
    """

    symbols: dict[str, SymbolDef]
    fail: SymbolDef
    provided: ProvidedWeights = field(default=PROVIDED, compare=False)

    def get(self, symbol: str) -> SymbolDef:
        found = self.symbols.get(symbol)
        if found is not None:
            return found
        found = self.provided.get(symbol)
        if found is not None:
            return found
        if symbol.endswith("_FAIL"):
            return self.fail
        return SymbolDef()

    def knows(self, symbol: str) -> bool:
        return symbol in self.symbols or symbol in self.provided or symbol.endswith("_FAIL")


def load_scores(extra: tuple[str, ...] = ()) -> ScoreTable:
    """The shipped table, then each file in ``extra`` (``checks.score_files``) overriding
    entries."""
    symbols: dict[str, SymbolDef] = {}
    fail: SymbolDef | None = None
    shipped = resources.files("scanner").joinpath("data/scores")
    for entry in sorted(shipped.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text("utf-8"))
            fail = _merge(symbols, data, f"scanner/data/scores/{entry.name}") or fail
    for i, path in enumerate(extra):
        fail = _merge(symbols, _read_site_file(path, i), path) or fail
    return ScoreTable(symbols, fail or SymbolDef())


def _read_site_file(path: str, index: int) -> dict:
    """One site score file as TOML data; any failure names the file and its key."""
    where = f"{path} (checks.score_files[{index}])"
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the score table: {exc.strerror}; fix the "
                          "path or remove it from checks.score_files") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: the score table is not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None


def _merge(into: dict[str, SymbolDef], data: dict, source: str) -> SymbolDef | None:
    unknown = sorted(set(data) - {"symbols", "fail"})
    if unknown:  # e.g. [MY_SYMBOL] for [symbols.MY_SYMBOL]: it would change nothing
        raise ConfigError(f"{source}: unknown key '{unknown[0]}'; a score table has "
                          "[symbols.NAME] tables and an optional [fail] table")
    table = data.get("symbols", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: 'symbols' must be a table of [symbols.NAME] tables")
    for name, entry in table.items():
        into[name] = _symbol(entry, f"symbols.{name}", source)
    if "fail" in data:
        return _symbol(data["fail"], "fail", source)
    return None


def _symbol(entry: object, where: str, source: str) -> SymbolDef:
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: '{where}' must be a table ([{where}] with weight = "
                          f"...), got {entry!r}")
    allowed = {"weight", "description", "category", "tempfail"}
    unknown = set(entry) - allowed
    if unknown:
        raise ConfigError(f"{source}: unknown key '{where}.{sorted(unknown)[0]}'; "
                          f"allowed: {', '.join(sorted(allowed))}")
    weight = entry.get("weight", 0.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) \
            or not math.isfinite(weight):
        raise ConfigError(f"{source}: '{where}.weight' must be a finite number, got {weight!r}")
    category = entry.get("category", "")
    if category not in CATEGORIES:
        raise ConfigError(f"{source}: '{where}.category' = {category!r}; use one of "
                          + ", ".join(repr(c) for c in CATEGORIES))
    tempfail = entry.get("tempfail", False)
    if not isinstance(tempfail, bool):  # bool("no") is True: it would defer the mail
        raise ConfigError(f"{source}: '{where}.tempfail' must be true or false, "
                          f"got {tempfail!r}")
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{source}: '{where}.description' must be a string, "
                          f"got {description!r}")
    return SymbolDef(float(weight), description, category, tempfail)

"""Plain data of the rule engine: rule definitions as read, problems, load statistics.

A :class:`RuleDef` is one ``header``/``body``/... line as written in a ``.cf`` file;
:class:`ParsedConfig` is everything the reader collected from a set of files (rules,
scores, descriptions, tflags, ReplaceTags data, problems and counts of what was
skipped). The compiler (:mod:`scanner.rules.compiler`) turns it into a runnable
rule set.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

RULE_TYPES = ("header", "body", "rawbody", "full", "uri", "meta", "mimeheader")
"""Rule types this engine evaluates (``eval:`` variants excepted)."""

UNSUPPORTED_RULE_TYPES = ("uri_detail", "askdns", "urirhssub", "urirhsbl", "uridnsbl",
                          "uridnssub", "uri_block_cc", "uri_block_cidr", "uri_block_cont",
                          "check_hashbl_bodyre", "hashbl_acl", "pdfinfo", "uri_domain")
"""Rule-defining directives of plugins this engine does not implement."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong in a rule file: where, which rule (if any) and what."""

    file: str
    line: int
    message: str
    rule: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.rule + ': ' if self.rule else ''}{self.message}"


@dataclass(slots=True)
class RuleDef:
    """One rule definition line: ``<kind> <name> <text>``."""

    name: str
    kind: str
    text: str
    file: str
    line: int


@dataclass(slots=True)
class ParsedConfig:
    """What the ``.cf`` reader collected; later definitions override earlier ones."""

    rules: dict[str, RuleDef] = field(default_factory=dict)
    scores: dict[str, tuple[float, ...]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    tflags: dict[str, str] = field(default_factory=dict)
    priorities: dict[str, int] = field(default_factory=dict)
    replace_tags: dict[str, str] = field(default_factory=dict)
    replace_pre: dict[str, str] = field(default_factory=dict)
    replace_inter: dict[str, str] = field(default_factory=dict)
    replace_post: dict[str, str] = field(default_factory=dict)
    replace_rules: set[str] = field(default_factory=set)
    replace_start: str = "<"
    replace_end: str = ">"
    redirector_patterns: list[tuple[str, str, int]] = field(default_factory=list)
    tlds: set[str] = field(default_factory=set)
    plugins: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    """Directives or rule kinds skipped, by name (e.g. ``eval:header``, ``askdns``)."""
    unknown: list[Problem] = field(default_factory=list)
    """Directives this engine does not know (ignored), where they are: a typo in a site
    rule file ("descibe") shows up in ``scanner rules lint``."""
    files: list[str] = field(default_factory=list)
    lines: int = 0


@dataclass(slots=True)
class LoadStats:
    """How many rules of each kind loaded, and why the others did not."""

    defined: Counter = field(default_factory=Counter)
    loaded: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    untranslatable: Counter = field(default_factory=Counter)
    """Perl regex features that could not be translated, by feature."""
    eval_rules: Counter = field(default_factory=Counter)
    disabled: int = 0
    """Rules with score 0 (not run, as in SpamAssassin)."""
    degraded_metas: int = 0
    """Metas depending on a rule this engine cannot run (it counts as not hit)."""
    prefiltered: int = 0
    always_run: int = 0

    def summary(self) -> dict[str, object]:
        non_eval = sum(self.defined.values())
        loaded = sum(self.loaded.values())
        return {
            "defined_non_eval": non_eval,
            "loaded": loaded,
            "loaded_pct": round(100.0 * loaded / non_eval, 2) if non_eval else 100.0,
            "by_type": {k: f"{self.loaded[k]}/{self.defined[k]}" for k in sorted(self.defined)},
            "failed": dict(self.failed),
            "untranslatable": dict(self.untranslatable),
            "eval_rules_skipped": sum(self.eval_rules.values()),
            "disabled_score_0": self.disabled,
            "degraded_metas": self.degraded_metas,
            "prefiltered": self.prefiltered,
            "always_run": self.always_run,
        }

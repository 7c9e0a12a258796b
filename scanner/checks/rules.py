"""The ``rules`` check: SpamAssassin-style rules and amavis's BAD-HEADER checks.

Rules are loaded and compiled once, when the check is built (and again on SIGHUP):
the shipped set (``scanner/rules/cf/``), then ``sa_compat_paths`` (e.g. Debian's
``/usr/share/spamassassin``), then the admin ``dirs``. A broken rule is logged with
file and line and left out; it never stops the server. Each rule hit is a symbol
named after the rule whose weight is the rule's own ``score`` (declared to the score
table at load time; a score-file entry overrides it); a ``tflags multiple`` rule
counts once per match. Evaluation runs off the event loop within ``time_budget``
seconds; running out gives ``RULES_TIMEOUT``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from scanner.auth.received import ChainNetworks, chain_networks, msa_networks_option, task_chain
from scanner.checks.base import CheckContext
from scanner.config.model import Config
from scanner.config.schema import opt
from scanner.errors import ConfigError
from scanner.rules import badheader
from scanner.rules.compiler import RuleSet
from scanner.rules.engine import evaluate
from scanner.rules.loader import load_rules
from scanner.rules.uris import UriFinder, text_uri_regex
from scanner.rules.views import MessageView, ViewLimits
from scanner.scores import PROVIDED, SymbolDef
from scanner.task import Hit, Task

BODY_KINDS = frozenset({"body", "rawbody", "uri", "full", "mimeheader"})
log = logging.getLogger("scanner.rules")
MAX_LOGGED_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class RulesSettings:
    """Settings of the rules check ([checks.settings.rules])."""

    shipped: bool = opt(True, "load the project's rule set (scanner/rules/cf)")
    sa_compat_paths: tuple[str, ...] = opt(
        [], "SpamAssassin rule directories loaded after the shipped set, e.g. "
        "/usr/share/spamassassin and /etc/spamassassin")
    dirs: tuple[str, ...] = opt([], "admin rule directories (*.pre, *.cf), loaded last")
    score_set: int = opt(0, "which of a four-value score line to use (SpamAssassin score "
                         "sets: 0 no net/bayes, 1 net, 2 bayes, 3 both)", min=0, max=3)
    body_part_scan_size: int = opt(50000, "bytes of each text part body rules see; 0 = all",
                                   min=0)
    rawbody_part_scan_size: int = opt(500000, "bytes of each text part rawbody rules see; "
                                      "0 = all", min=0)
    max_uris: int = opt(10000, "most URIs (with their cleaned forms) uri rules see", min=1)
    time_budget: float = opt(2.0, "seconds of rule evaluation per message; then "
                             "RULES_TIMEOUT", min=0.01)
    hyperscan: bool = opt(True, "prefilter with Hyperscan when the package is installed")
    cache_dir: str = opt("", "where compiled Hyperscan databases are cached; empty = a "
                         "private directory under the system temp dir; '-' = no cache")
    bad_header: bool = opt(True, "emit amavis's BAD_HEADER_* symbols")
    trusted_networks: tuple[str, ...] = opt(
        [], "relays whose Received headers are believed (the X-Spam-Relays-* pseudo-headers); "
        "empty = [policy] mynetworks")
    internal_networks: tuple[str, ...] = opt(
        [], "our own MX/relays (also trusted); empty = trusted_networks")
    msa_networks: tuple[str, ...] = msa_networks_option()


def _gone(settings: RulesSettings) -> list[str]:
    return [p for p in (*settings.sa_compat_paths, *settings.dirs) if not Path(p).is_dir()]


def _check_dirs(settings: RulesSettings, source: str) -> None:
    """A configured rule directory that is missing stops start-up (a mistyped path would
    leave the site's rules out without a word); at a reload the current rules stay."""
    for key in ("sa_compat_paths", "dirs"):
        for i, path in enumerate(getattr(settings, key)):
            if not Path(path).is_dir():
                raise ConfigError(f"{source}: 'checks.settings.rules.{key}[{i}]' = {path!r} "
                                  "is not a directory; fix the path or remove the entry")


class Rules:
    """SpamAssassin-compatible rules plus BAD-HEADER checks."""

    name: ClassVar[str] = "rules"
    description: ClassVar[str] = ("SpamAssassin-compatible rules (shipped set, SpamAssassin "
                                  "and admin directories) and amavis BAD-HEADER checks")
    symbols: ClassVar[dict[str, str]] = {
        "RULES_TIMEOUT": "rule evaluation ran out of time_budget",
        **{s: f"amavis BAD-HEADER-{n}" for s, n in badheader.CODES.items()},
    }
    default_enabled: ClassVar[bool] = True
    kind: ClassVar[str] = "spam"
    """Its rule hits are spam scores (dropped for bypass_spam_checks, as amavis then
    does not call SpamAssassin); its BAD-HEADER hits carry their own source
    (``bad_header``) and go by their category (bypass_header_checks)."""
    Settings: ClassVar[type] = RulesSettings

    def __init__(self, settings: RulesSettings, context: CheckContext) -> None:
        self._settings = settings
        self._run_cpu = context.run_cpu
        self._lock = threading.Lock()
        self._limits = view_limits(settings)
        self._last_good = context.last_good
        self._networks = relay_networks(settings, context.config)
        gone = _gone(settings)
        before = self._last_good.get(("rules", settings))
        if gone and before is not None:
            log.error("rules: keeping the rules read before: %s is not a directory any "
                      "more (checks.settings.rules); restore it, then send SIGHUP",
                      ", ".join(gone))
            self._rs, self._finder = before
            return
        _check_dirs(settings, context.config.source)
        self._rs, self._finder = self._last_good.keep(("rules", settings), self._load())

    @property
    def ruleset(self) -> RuleSet:
        return self._rs

    def symbol_area(self, symbol: str) -> str | None:
        """Where a rule's points count for autolearning, as SpamAssassin splits them:
        header rules in the header, body, rawbody, uri, full and mimeheader rules in
        the body, meta rules (and the rest) in neither; "ignore" for a rule flagged
        ``noautolearn`` or ``userconf`` (GTUBE), whose points do not count at all."""
        rule = self._rs.by_name.get(symbol)
        if rule is None:
            return None
        if rule.noautolearn:
            return "ignore"
        return "header" if rule.kind == "header" else \
            "body" if rule.kind in BODY_KINDS else None

    def _load(self) -> tuple[RuleSet, UriFinder]:
        s = self._settings
        rs = load_rules(list(s.sa_compat_paths) + list(s.dirs), shipped=s.shipped,
                        score_set=s.score_set, use_hyperscan=s.hyperscan,
                        cache_dir=cache_dir(s))
        for problem in rs.problems[:MAX_LOGGED_PROBLEMS]:
            log.warning("rules: %s", problem)
        if len(rs.problems) > MAX_LOGGED_PROBLEMS:
            log.warning("rules: %d more problems; see `scanner rules lint`",
                        len(rs.problems) - MAX_LOGGED_PROBLEMS)
        declare(rs)
        return rs, text_uri_regex(rs.tlds)

    def reload(self) -> None:
        """SIGHUP: reread every rule file; the old rules stay if loading fails or a
        configured directory is gone (start-up would refuse it)."""
        gone = _gone(self._settings)
        if gone:
            log.error("rules: keeping the current rules: %s is not a directory any more "
                      "(checks.settings.rules); restore it, then send SIGHUP again",
                      ", ".join(gone))
            return
        rs, finder = self._last_good.keep(("rules", self._settings), self._load())
        with self._lock:
            self._rs, self._finder = rs, finder

    async def run(self, task: Task) -> Iterable[Hit]:
        return await self._run_cpu(self.scan, task)

    async def run_without_spam(self, task: Task) -> Iterable[Hit]:
        """Only the BAD-HEADER findings: the run of a message whose spam checks are
        skipped (a bounce the bounce killer blocks, :mod:`scanner.pipeline.checks`)."""
        return bad_header_hits(task) if self._settings.bad_header else []

    def scan(self, task: Task) -> list[Hit]:
        """All hits for one message (CPU work; runs in a worker thread)."""
        with self._lock:
            rs, finder = self._rs, self._finder
        view = message_view(task, rs, finder, self._limits, self._networks)
        result = evaluate(rs, view, self._settings.time_budget)
        hits = [Hit(h.name, factor=float(h.count),
                    options=(f"{h.count}x",) if h.count > 1 else ()) for h in result.hits]
        if result.timed_out:
            log.warning("(%s) rules: time budget of %g s exhausted in rule %s",
                        task.log_id, self._settings.time_budget, result.timed_out)
            hits.append(Hit("RULES_TIMEOUT", options=(result.timed_out,)))
        if self._settings.bad_header:
            hits.extend(bad_header_hits(task))
        return hits


def cache_dir(settings: RulesSettings) -> Path | None:
    """Where compiled Hyperscan databases are kept (``cache_dir``; None: no cache)."""
    value = settings.cache_dir
    if value == "-":
        return None
    if value:
        return Path(value)
    return Path(tempfile.gettempdir()) / f"scanner-rules-{os.getuid()}"


def view_limits(settings: RulesSettings) -> ViewLimits:
    """The size limits of the rules' views, from the check's settings."""
    return ViewLimits(settings.body_part_scan_size, settings.rawbody_part_scan_size,
                      settings.max_uris)


def declare(rs: RuleSet) -> None:
    """Declare each rule's own score to this process's score table (a score-file entry
    for the same symbol still wins)."""
    PROVIDED.set(Rules.name, {name: SymbolDef(score, rs.by_name[name].description)
                              for name, score in rs.scores().items()})


def relay_networks(settings: RulesSettings, config: Config) -> ChainNetworks:
    """(trusted, internal, msa) networks of the X-Spam-Relays-* pseudo-headers."""
    return chain_networks(settings, config.policy.mynetworks, "checks.settings.rules",
                          config.source)


def message_view(task: Task, rs: RuleSet, finder: UriFinder | None, limits: ViewLimits,
                 networks: ChainNetworks | None = None
                 ) -> MessageView:
    """The views the rules read for ``task``: its raw bytes, the part tree the unpack
    stage built (none: the views walk the raw MIME), the envelope sender (a null
    sender: guessed from Return-Path and the like, as SpamAssassin does) and, with
    ``networks`` (trusted, internal, msa), the Task's relay chain (XFORWARD included) as
    SpamAssassin's X-Spam-Relays-* pseudo-headers."""
    sender = task.envelope.sender.strip("<>") or None
    chain = (task_chain(task, networks.trusted, networks.internal, msa=networks.msa)
             if networks is not None else None)
    return MessageView(task.raw, task.parts, envelope_from=sender, limits=limits,
                       uri_finder=finder, redirectors=rs.redirectors, chain=chain)


def bad_header_hits(task: Task) -> list[Hit]:
    """amavis's BAD-HEADER findings for ``task`` (8-bit header text is allowed when
    the sender gave SMTPUTF8)."""
    return badheader.check(task.raw, task.envelope.smtputf8)

"""Turn a :class:`ParsedConfig` into a runnable :class:`RuleSet`, once, at start.

Each rule's pattern is translated (:mod:`scanner.rules.perlre`) and compiled; a rule
that does not parse, translate or compile becomes a :class:`Problem` with its file and
line and is left out. Scores follow SpamAssassin: the chosen score set of a ``score``
line, else 1.0 (0.01 for ``T_`` rules, negative with ``tflags nice``); a score of 0
disables a rule. Metas are put in dependency order; a meta in a cycle is left out,
and references to rules that do not exist or cannot run count as "not hit".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import regex

from scanner.rules import expr, replacetags
from scanner.rules.evals import Eval, find_eval
from scanner.rules.model import LoadStats, ParsedConfig, Problem, RuleDef
from scanner.rules.perlre import Translated, Untranslatable, split_delimited, translate
from scanner.rules.prefilter import Prefilter
from scanner.rules.untimed import NEVER, untimed_max

_HEADER = re.compile(r"^(\S+?)\s*(=~|!~)\s*(.*)$", re.S)
_UNSET = re.compile(r"^\s*\[if-unset:\s?(.*)\]\s*$", re.S)
_CAPTURE = re.compile(r"%\{\w+\}")
TEXT_KINDS = ("body", "rawbody", "uri", "full")


@dataclass(slots=True)
class Rule:
    """One runnable rule."""

    name: str
    kind: str
    score: float
    file: str
    line: int
    description: str = ""
    pattern: regex.Pattern | None = None
    translated: Translated | None = None
    target: str = ""
    negate: bool = False
    exists: bool = False
    unset: bytes | None = None
    multiple: bool = False
    maxhits: int = 0
    nosubject: bool = False
    noautolearn: bool = False
    meta: Callable[[Mapping[str, float]], float] | None = None
    deps: tuple[str, ...] = ()
    evaluate: Eval | None = None  # an eval: rule this engine runs (scanner.rules.evals)
    untimed_max: int = NEVER  # longest text searched without a timeout (untimed.py)

    @property
    def reported(self) -> bool:
        """Shown as a symbol: not a ``__`` sub-rule, score not zero."""
        return not self.name.startswith("__") and self.score != 0


@dataclass(slots=True)
class HeaderGroup:
    """Header rules reading the same header text, with a prefilter over their patterns.

    ``prefiltered[i]`` is the rule's index in ``prefilter`` (None: the rule always runs).
    """

    target: str
    unset: bytes | None
    rules: list[Rule]
    prefilter: Prefilter | None = None
    prefiltered: list[int | None] = field(default_factory=list)


MIN_HEADER_GROUP = 4  # fewer rules on one header: a prefilter scan costs more than it saves


@dataclass(slots=True)
class RuleSet:
    """Compiled rules by kind, metas in evaluation order, their prefilters and stats."""

    header: list[Rule] = field(default_factory=list)
    header_groups: list[HeaderGroup] = field(default_factory=list)
    mimeheader: list[Rule] = field(default_factory=list)
    text: dict[str, list[Rule]] = field(default_factory=lambda: {k: [] for k in TEXT_KINDS})
    prefilters: dict[str, Prefilter] = field(default_factory=dict)
    metas: list[Rule] = field(default_factory=list)
    evals: list[Rule] = field(default_factory=list)
    by_name: dict[str, Rule] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    unknown: list[Problem] = field(default_factory=list)
    stats: LoadStats = field(default_factory=LoadStats)
    tlds: set[str] = field(default_factory=set)
    redirectors: list[regex.Pattern] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.by_name)

    def scores(self) -> dict[str, float]:
        return {r.name: r.score for r in self.by_name.values() if r.reported}


def compile_ruleset(cfg: ParsedConfig, score_set: int = 0, use_hyperscan: bool = True,
                    cache_dir: Path | None = None) -> RuleSet:
    """Compile everything that can run; record the rest."""
    rs = RuleSet(problems=list(cfg.problems), unknown=list(cfg.unknown), tlds=set(cfg.tlds),
                 files=list(cfg.files))
    st = rs.stats
    unsupported: set[str] = set()
    for name, rd in cfg.rules.items():
        text = rd.text.strip()
        function = find_eval(rd.kind, text) if text.startswith("eval:") else None
        if function is not None:
            rs.by_name[name] = Rule(name, rd.kind, _score(cfg, name, score_set), rd.file,
                                    rd.line, cfg.descriptions.get(name, ""),
                                    evaluate=function)
            continue
        if text.startswith("eval:") or rd.kind not in ("header", "body", "rawbody", "full",
                                                        "uri", "meta", "mimeheader"):
            st.eval_rules[f"{rd.kind}:eval" if text.startswith("eval:") else rd.kind] += 1
            unsupported.add(name)
            continue
        st.defined[rd.kind] += 1
        score = _score(cfg, name, score_set)
        if score == 0:
            st.disabled += 1
        try:
            rule = _build(rd, cfg, score)
        except Untranslatable as exc:
            st.failed[rd.kind] += 1
            st.untranslatable[exc.feature] += 1
            rs.problems.append(Problem(rd.file, rd.line, f"cannot translate regex: {exc}", name))
            unsupported.add(name)
            continue
        except (ValueError, regex.error, expr.ExprError, OverflowError, RecursionError) as exc:
            st.failed[rd.kind] += 1
            rs.problems.append(Problem(rd.file, rd.line, str(exc), name))
            unsupported.add(name)
            continue
        rs.by_name[name] = rule
        st.loaded[rd.kind] += 1
    _order_metas(rs, unsupported)
    for name in list(rs.by_name):
        rule = rs.by_name[name]
        if rule.score == 0:
            continue
        if rule.evaluate is not None:
            rs.evals.append(rule)
        elif rule.kind == "header":
            rs.header.append(rule)
        elif rule.kind == "mimeheader":
            rs.mimeheader.append(rule)
        elif rule.kind in TEXT_KINDS:
            rs.text[rule.kind].append(rule)
    for kind in TEXT_KINDS:
        pf = Prefilter([r.translated for r in rs.text[kind]],  # type: ignore[misc]
                       use_hyperscan=use_hyperscan, cache_dir=cache_dir)
        rs.prefilters[kind] = pf
        st.always_run += len(pf.always)
        st.prefiltered += len(rs.text[kind]) - len(pf.always)
    rs.header_groups = _header_groups(rs.header, use_hyperscan, cache_dir)
    for pattern, file, line in cfg.redirector_patterns:
        try:
            body, flags, _ = split_delimited(pattern)
            rs.redirectors.append(translate(body, flags).compile())
        except (ValueError, regex.error) as exc:
            rs.problems.append(Problem(file, line, f"redirector_pattern: {exc}"))
    return rs


def _header_groups(rules: list[Rule], use_hyperscan: bool,
                   cache_dir: Path | None) -> list[HeaderGroup]:
    """Group header rules by the text they read; prefilter the bigger groups."""
    groups: dict[tuple[str, bytes | None], HeaderGroup] = {}
    for rule in rules:
        key = (rule.target, rule.unset)
        if key not in groups:
            groups[key] = HeaderGroup(rule.target, rule.unset, [])
        groups[key].rules.append(rule)
    for group in groups.values():
        scanned = [r for r in group.rules if not r.exists and r.translated is not None]
        if len(scanned) < MIN_HEADER_GROUP:
            group.prefiltered = [None] * len(group.rules)
            continue
        group.prefilter = Prefilter([r.translated for r in scanned],  # type: ignore[misc]
                                    use_hyperscan=use_hyperscan, cache_dir=cache_dir)
        index = {id(r): i for i, r in enumerate(scanned)}
        group.prefiltered = [index.get(id(r)) for r in group.rules]
    return list(groups.values())


def _score(cfg: ParsedConfig, name: str, score_set: int) -> float:
    values = cfg.scores.get(name)
    if values is not None:
        return values[score_set] if len(values) == 4 else values[0]
    score = 0.01 if name.startswith("T_") else 1.0
    return -score if "nice" in cfg.tflags.get(name, "").split() else score


def _build(rd: RuleDef, cfg: ParsedConfig, score: float) -> Rule:
    tflags = cfg.tflags.get(rd.name, "").split()
    rule = Rule(rd.name, rd.kind, score, rd.file, rd.line, cfg.descriptions.get(rd.name, ""))
    rule.multiple = "multiple" in tflags
    for flag in tflags:
        if flag.startswith("maxhits="):
            try:
                rule.maxhits = max(0, int(flag[8:]))
            except ValueError:
                raise ValueError(f"tflags: bad {flag!r}") from None
    rule.nosubject = "nosubject" in tflags
    # SpamAssassin's autolearn leaves out rules flagged noautolearn and the userconf ones
    # (whitelists, GTUBE): scanner.ml.autolearn
    rule.noautolearn = "noautolearn" in tflags or "userconf" in tflags
    text = rd.text.strip()
    if rd.kind == "meta":
        rule.meta, deps = expr.compile_expr(_expand_globs(text, cfg, rd.name))
        rule.deps = tuple(deps)
        return rule
    if rd.kind in ("header", "mimeheader"):
        if text.startswith("exists:"):
            rule.exists = True
            rule.target = text[7:].strip()
            if not rule.target:
                raise ValueError("exists: without a header name")
            return rule
        m = _HEADER.match(text)
        if not m:
            raise ValueError(f"expected 'Header =~ /re/', got {text[:40]!r}")
        rule.target, op, text = m.group(1), m.group(2), m.group(3)
        rule.negate = op == "!~"
    body, flags, rest = split_delimited(text)
    if rest.strip():
        unset = _UNSET.match(rest)
        if not unset or rd.kind not in ("header", "mimeheader"):
            raise ValueError(f"unexpected text after the regex: {rest.strip()[:40]!r}")
        rule.unset = unset.group(1).encode("latin-1")
    if rd.name in cfg.replace_rules:
        body = replacetags.expand(body, cfg)
    if _CAPTURE.search(body):
        raise Untranslatable("capture template %{NAME}")
    rule.translated = translate(body, flags)
    rule.pattern = rule.translated.compile()
    rule.untimed_max = untimed_max(rule.pattern.pattern, rule.translated.flags)
    return rule


def _expand_globs(text: str, cfg: ParsedConfig, own: str) -> str:
    def expand(m: re.Match) -> str:
        glob = re.escape(m.group(1)).replace(r"\?", ".").replace(r"\*", ".*?")
        names = sorted(n for n in cfg.rules if re.fullmatch(glob, n) and n != own)
        return f" ({'+'.join(names) or '0'}) "
    return re.sub(r"rules_matching\(\s*([\w*?]+)\s*\)", expand, text)


def _order_metas(rs: RuleSet, unsupported: set[str]) -> None:
    """Metas in dependency order; cycles dropped; degraded metas counted."""
    metas = {n: r for n, r in rs.by_name.items() if r.kind == "meta"}
    order: list[Rule] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    degraded: dict[str, bool] = {}
    warned: set[str] = set()

    def visit(name: str, path: list[str]) -> bool:
        """True when the meta can run (not in a cycle)."""
        if state.get(name) == 2:
            return name in metas
        if state.get(name) == 1:
            return False
        state[name] = 1
        rule = metas[name]
        ok = True
        bad = False
        for dep in rule.deps:
            if dep in metas:
                if not visit(dep, path + [name]):
                    ok = False
                bad = bad or degraded.get(dep, False)
            elif dep in unsupported:
                bad = True
            elif dep not in rs.by_name and dep not in warned:
                warned.add(dep)
                rs.problems.append(Problem(rule.file, rule.line,
                                           f"meta refers to undefined rule {dep} "
                                           "(counts as not hit)", name))
        state[name] = 2
        degraded[name] = bad
        if not ok:
            rs.problems.append(Problem(rule.file, rule.line,
                                       "meta depends on itself (cycle); left out", name))
            del metas[name]
            rs.by_name.pop(name, None)
            rs.stats.loaded["meta"] -= 1
            rs.stats.failed["meta"] += 1
            return False
        order.append(rule)
        return True

    for name in list(metas):
        if name in metas:
            visit(name, [])
    rs.metas = [r for r in order if r.score != 0]
    rs.stats.degraded_metas = sum(1 for r in rs.metas if degraded.get(r.name))

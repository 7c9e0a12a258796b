"""Evaluate a compiled :class:`RuleSet` on one :class:`MessageView`, within a time budget.

Order: header and mimeheader rules, the ``eval:`` rules the engine knows
(:mod:`scanner.rules.evals`), then body, uri, rawbody and full rules (each
family prefiltered by one scan, candidates confirmed with the exact regex on each
paragraph, URI or the whole message), then metas in dependency order. The budget is
checked before every regex call, and a call gets the time left as its timeout (the
``regex`` module enforces it inside the match) unless its text is no longer than the
rule's ``untimed_max`` (:mod:`scanner.rules.untimed` proves the search's worst case
there a few milliseconds; the timeout itself costs two system calls per call). So a
runaway pattern costs at most the budget: evaluation then stops, the rule is named in
``timed_out`` and metas run on what is known, as SpamAssassin does when it exceeds its
time limit.

As in SpamAssassin, a rule hits at most once unless ``tflags multiple`` (then once
per match, up to ``maxhits``); a missing header is matched as the empty string (or
the ``[if-unset: ...]`` text); ``__`` rules and rules with score 0 are not reported.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from scanner.rules.compiler import Rule, RuleSet
from scanner.rules.views import MessageView


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A reported rule that hit: its score counts ``count`` times."""

    name: str
    score: float
    count: int
    kind: str
    description: str = ""


@dataclass(slots=True)
class Result:
    """What one evaluation found."""

    hits: list[RuleHit] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)
    timed_out: str | None = None
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return round(sum(h.score * h.count for h in self.hits), 3)


class _Deadline(Exception):
    """The time budget ran out in ``rule``."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


class _Run:
    def __init__(self, rs: RuleSet, view: MessageView, budget: float) -> None:
        self.rs = rs
        self.view = view
        self.start = time.monotonic()
        self.deadline = self.start + budget
        self.values: dict[str, float] = {}
        self.errors: list[str] = []

    def left(self, rule: Rule) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Deadline(rule.name)
        return left

    def count(self, rule: Rule, texts: Sequence[bytes], skip_first: bool = False) -> int:
        """Matches of ``rule`` in ``texts`` (1 at most unless multiple).

        A regex call on a text longer than the rule's ``untimed_max`` gets the time
        left of the message's budget as its timeout.
        """
        pattern = rule.pattern
        assert pattern is not None
        deadline = self.deadline
        untimed = rule.untimed_max
        if skip_first:
            texts = texts[1:]
        try:
            if not rule.multiple:
                search = pattern.search
                for text in texts:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise _Deadline(rule.name)
                    if (search(text) if len(text) <= untimed
                            else search(text, timeout=left, concurrent=True)):
                        return 1
                return 0
            hits = 0
            for text in texts:
                left = self.left(rule)
                matches = (pattern.finditer(text) if len(text) <= untimed
                           else pattern.finditer(text, timeout=left, concurrent=True))
                for _ in matches:
                    hits += 1
                    if rule.maxhits and hits >= rule.maxhits:
                        return hits
            return hits
        except TimeoutError:
            raise _Deadline(rule.name) from None

    def headers(self) -> None:
        for group in self.rs.header_groups:
            text = self.view.header_text(group.target, group.unset)
            subject = text if text is not None else b""
            candidates = (group.prefilter.candidates([subject], subject)
                          if group.prefilter is not None else None)
            for rule, index in zip(group.rules, group.prefiltered, strict=True):
                if rule.exists:
                    hit = int(text is not None)
                else:
                    if candidates is not None and index is not None \
                            and index not in candidates:
                        found = 0  # the prefilter proves the pattern cannot match
                    else:
                        found = self.count(rule, [subject])
                    hit = found if not rule.negate else int(found == 0)
                if hit:
                    self.values[rule.name] = hit

    def mimeheaders(self) -> None:
        whole: dict[int, bytes] = {}  # a leaf's fields as one text, for every ALL rule
        for rule in self.rs.mimeheader:
            values: list[bytes] = []
            name, *mods = rule.target.split(":")
            for i, part in enumerate(self.view.leaves):
                if name == "ALL":
                    text = whole.get(i)
                    if text is None:
                        text = whole[i] = b"".join(n.encode("latin-1") + b":" + v
                                                   for n, v in part.headers.order)
                    values.append(text)
                    continue
                raw = part.headers.raw(name)
                values.extend(raw if "raw" in mods else part.headers.decoded(name))
            if rule.exists:
                hit = int(bool(values))
            else:
                texts = values or ([rule.unset] if rule.unset is not None else [b""])
                found = self.count(rule, texts)
                hit = found if not rule.negate else int(found == 0)
            if hit:
                self.values[rule.name] = hit

    def texts(self, kind: str, texts: Sequence[bytes], joined: bytes) -> None:
        rules = self.rs.text[kind]
        if not rules or not texts:
            return
        candidates = self.rs.prefilters[kind].candidates(texts, joined)
        for i in sorted(candidates):
            rule = rules[i]
            found = self.count(rule, texts, skip_first=kind == "body" and rule.nosubject)
            if found:
                self.values[rule.name] = found

    def evals(self) -> None:
        for rule in self.rs.evals:
            assert rule.evaluate is not None
            value = rule.evaluate(self.view)
            if value:
                self.values[rule.name] = value

    def metas(self) -> None:
        values = self.values
        for rule in self.rs.metas:
            assert rule.meta is not None
            try:
                result = rule.meta(values)
            except (TypeError, ArithmeticError) as exc:
                self.errors.append(f"{rule.name}: {exc}")
                continue
            if result:
                number = float(result)
                values[rule.name] = number if number > 0 else 1


def evaluate(rs: RuleSet, view: MessageView, budget: float = 5.0) -> Result:
    """Run every rule of ``rs`` on ``view``; never raises for a rule's sake."""
    run = _Run(rs, view, budget)
    result = Result()
    try:
        run.headers()
        run.mimeheaders()
        run.evals()
        # a view is built only when rules read it (the full view copies the message)
        if rs.text["body"]:
            run.texts("body", view.body, view.body_joined)
        if rs.text["uri"]:
            run.texts("uri", view.uris, view.uris_joined)
        if rs.text["rawbody"]:
            run.texts("rawbody", view.rawbody, view.rawbody_joined)
        if rs.text["full"]:
            run.texts("full", [view.full], view.full)
    except _Deadline as exc:
        result.timed_out = exc.rule
    run.metas()
    result.values = run.values
    result.errors = run.errors
    for name, value in run.values.items():
        rule = rs.by_name.get(name)
        if rule is None or not rule.reported:
            continue
        count = int(value) if rule.multiple and rule.kind != "meta" else 1
        result.hits.append(RuleHit(name, rule.score, max(1, count), rule.kind, rule.description))
    result.hits.sort(key=lambda h: h.name)
    result.seconds = time.monotonic() - run.start
    return result

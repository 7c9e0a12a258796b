"""The Processor's part in autolearning: the decision after the policy stage (which
hits count, where), X-Spam-Status's autolearn= word, and a message queued only once it
has its final answer."""

from __future__ import annotations

import email
from typing import Any

from scanner.ml.autolearn import Thresholds
from scanner.task import Hit, Task
from tests.policy.recipient_mix import BAYES, copies, head, run
from tests.policy.recipient_mix import FakeCheck as _FakeCheck

# symbols with weights in the shipped score files (3.0, 3.0, 2.5), as the fake rules'
RULE = Hit("DMARC_REJECT", source="rules")
RULE2 = Hit("RCVD_IN_XBL", source="rules")
RULE3 = Hit("RCVD_IN_SBL", source="rules")
TAGGED = "tag_level = -999\nspam_destiny = 'pass'\n"


class FakeRules(_FakeCheck):
    """The rules check as the processor sees it: hits, and each symbol's area."""

    def __init__(self, hits: list[Hit], areas: dict[str, str]) -> None:
        super().__init__("rules", "spam", hits)
        self._areas = areas

    def symbol_area(self, symbol: str) -> str | None:
        return self._areas.get(symbol)


class FakeLearner(_FakeCheck):
    """A classifier that autolearns: it records what it was asked to queue."""

    def __init__(self, thresholds: Thresholds) -> None:
        super().__init__("learner", "other", [])
        self.autolearn = thresholds
        self.queued: list[str] = []

    def queue_for_learning(self, task: Task) -> bool:
        self.queued.append(task.autolearn)
        return True


def _run(sink: Any, policy: str, thresholds: Thresholds, hits: list[Hit],
         areas: dict[str, str] | None = None) -> tuple[list[str], FakeLearner]:
    learner = FakeLearner(thresholds)
    rules = FakeRules(hits, areas or {})
    replies, _ = run(sink, policy, hits, ["bob@example.test"], extra_checks=(rules, learner))
    return replies, learner


def _status(sink: Any) -> str:
    """X-Spam-Status of bob's copy, unfolded."""
    message = email.message_from_bytes(head(copies(sink)["bob@example.test"]))
    return " ".join(str(message["X-Spam-Status"]).split())


def test_a_sure_spam_is_queued_and_the_header_says_so(sink):
    hits = [RULE, RULE2, RULE3, BAYES]
    replies, learner = _run(sink, TAGGED, Thresholds(spam_above=3.0), hits)
    assert replies[0].startswith("250") and learner.queued == ["spam"]
    assert _status(sink).endswith("autolearn=spam")


def test_the_areas_come_from_the_checks(sink):
    hits = [RULE, RULE2, BAYES]
    need = Thresholds(spam_above=3.0, min_header_points=1.0)
    _, learner = _run(sink, TAGGED, need, hits, {RULE.symbol: "body"})
    assert learner.queued == [] and _status(sink).endswith("autolearn=no")
    sink.received.clear()
    _, learner = _run(sink, TAGGED, need, hits,
                      {RULE.symbol: "body", RULE2.symbol: "header"})
    assert learner.queued == ["spam"]
    sink.received.clear()
    _, learner = _run(sink, TAGGED, Thresholds(spam_above=3.0), hits,
                      {RULE.symbol: "ignore", RULE2.symbol: "ignore"})
    assert learner.queued == []  # noautolearn rules: no points at all


def test_a_deferred_message_is_not_queued(sink):
    sink.behaviour.rcpt_reply = lambda r: "451 4.3.0 try later"
    replies, learner = _run(sink, TAGGED, Thresholds(spam_above=3.0), [RULE, RULE2, BAYES])
    assert replies[0].startswith("451") and learner.queued == []


def test_bypassed_spam_checks_learn_nothing(sink):
    policy = TAGGED + "bypass_spam_checks = true\n"
    _, learner = _run(sink, policy, Thresholds(spam_above=3.0), [RULE, RULE2, BAYES])
    assert learner.queued == []


def test_blocked_spam_is_learnt_too(sink):
    policy = "spam_destiny = 'discard'\n"
    replies, learner = _run(sink, policy, Thresholds(spam_above=3.0),
                            [RULE, RULE2, RULE3, BAYES])
    assert replies[0].startswith("250") and "bob@example.test" not in copies(sink)
    assert learner.queued == ["spam"]

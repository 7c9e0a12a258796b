"""The eval: rules the engine runs itself (scanner/rules/evals.py)."""

from __future__ import annotations

from pathlib import Path

from scanner.rules.evals import find_eval

from .helpers import message, names, ruleset, run

# SpamAssassin 4.0.1's own lines (/usr/share/spamassassin/20_head_tests.cf, 50_scores.cf)
SA_RULES = """
header __UNPARSEABLE_RELAY_COUNT        eval:check_relays_unparseable()
tflags __UNPARSEABLE_RELAY_COUNT        userconf
meta	 UNPARSEABLE_RELAY	(__UNPARSEABLE_RELAY_COUNT >= 1)
tflags	 UNPARSEABLE_RELAY	userconf
describe UNPARSEABLE_RELAY      Informational: message has unparseable relay lines
score UNPARSEABLE_RELAY 0.001
"""
CORPUS = Path(__file__).resolve().parents[2] / "corpora" / "rules"


def test_spamassassins_unparseable_relay_rule_runs() -> None:
    rs = ruleset(SA_RULES)
    assert rs.stats.summary()["eval_rules_skipped"] == 0
    hit = run(rs, (CORPUS / "hits" / "UNPARSEABLE_RELAY.eml").read_bytes())
    assert names(hit) == {"UNPARSEABLE_RELAY"}
    assert hit.score == 0.001
    assert names(run(rs, (CORPUS / "misses" / "UNPARSEABLE_RELAY.eml").read_bytes())) == set()
    assert names(run(rs, message())) == set()  # no Received header at all


def test_unknown_evals_are_still_skipped() -> None:
    rs = ruleset("header FOO eval:check_for_missing_to_header()\n"
                 "header BAR eval:check_relays_unparseable('x')\n")
    assert rs.stats.summary()["eval_rules_skipped"] == 2
    assert find_eval("body", "eval:check_relays_unparseable()") is None

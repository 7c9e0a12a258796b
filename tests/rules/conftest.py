"""Fixtures of the rule engine tests: the shipped rule set, compiled once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.rules.compiler import RuleSet
from scanner.rules.loader import load_rules

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "corpora" / "rules"
SHARED_CORPORA = REPO.parent / "shared" / "corpora"
SA_RULES = Path("/usr/share/spamassassin")


@pytest.fixture(scope="session")
def shipped() -> RuleSet:
    return load_rules([], shipped=True)

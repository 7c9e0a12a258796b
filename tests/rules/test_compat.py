"""Debian's SpamAssassin rules load; the shipped set runs over the shared corpus."""

from __future__ import annotations

import tarfile

import pytest

from scanner.rules.compiler import RuleSet
from scanner.rules.loader import load_rules

from .conftest import SA_RULES, SHARED_CORPORA
from .helpers import run

TARBALL = SHARED_CORPORA / "spamassassin-public.tar.xz"


@pytest.mark.slow
@pytest.mark.skipif(not SA_RULES.is_dir(),
                    reason="Debian package spamassassin not installed (/usr/share/spamassassin)")
def test_debian_rules_load() -> None:
    rs = load_rules([SA_RULES], shipped=False, use_hyperscan=False)
    summary = rs.stats.summary()
    assert summary["loaded_pct"] >= 90
    assert summary["defined_non_eval"] > 2000


@pytest.mark.corpora
@pytest.mark.skipif(not TARBALL.exists(), reason=f"{TARBALL} missing (../shared/corpora)")
def test_shipped_rules_on_corpus_ham(shipped: RuleSet) -> None:
    hits = 0
    count = 0
    with tarfile.open(TARBALL, "r:xz") as tar:
        for member in tar:
            if not member.isfile() or "/ham/" not in member.name:
                continue
            fh = tar.extractfile(member)
            assert fh is not None
            result = run(shipped, fh.read(), budget=2.0)
            assert result.timed_out is None
            hits += result.score >= 5.0
            count += 1
            if count == 300:
                break
    assert hits <= 3  # the shipped rules alone must not make ham look like spam

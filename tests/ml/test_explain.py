"""``scanner scan --explain``: the classifier's decision split by block and by token."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scanner.ml.explain import explain
from scanner.ml.features import BLOCKS
from scanner.ml.hashing import bucket, hash_tokens
from scanner.ml.model import Model, load_model
from scanner.ml.text import message_text
from tests.helpers import REPO

MESSAGES = sorted((REPO / "corpora" / "modern").glob("*.eml"))


@pytest.fixture(scope="module")
def model() -> Model:
    return load_model(REPO / "models" / "default.model")


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.name)
@pytest.mark.parametrize("sender", [None, "bounce-42@lists.example.com"])
def test_blocks_add_up_to_the_decision(model: Model, path: Path, sender: str | None) -> None:
    raw = path.read_bytes()
    why = explain(model, raw, sender=sender)
    features = model.features(raw, sender=sender)
    assert set(why.blocks) == set(BLOCKS)
    assert why.bias + sum(why.blocks.values()) == pytest.approx(model.decision(features),
                                                                  abs=1e-4)
    assert why.probability == pytest.approx(model.score_message(raw, sender=sender), abs=1e-6)


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.name)
def test_header_token_shares_add_up_to_their_block(model: Model, path: Path) -> None:
    """Without a collision between two tokens, the named tokens account for the whole
    block: nothing is left out and nothing counted twice."""
    raw = path.read_bytes()
    why = explain(model, raw, top=10_000)
    texts = model.extractor.texts(message_text(raw, model.extractor.settings.limits))
    tokens = set(texts.headers)
    buckets = set(bucket(hash_tokens(sorted(tokens), "h"), model.extractor.settings.hash_bits)
                  .tolist())
    if len(buckets) != len(tokens):
        pytest.skip("two header tokens share a bucket in this message")
    rows = [v for b, _, v in why.towards_spam + why.towards_ham if b == "headers"]
    assert sum(rows) == pytest.approx(why.blocks["headers"], abs=1e-4)
    assert {t for b, t, _ in why.towards_spam + why.towards_ham if b == "headers"} <= tokens


def test_strongest_tokens_come_first_and_are_the_messages_own(model: Model) -> None:
    raw = (REPO / "corpora" / "modern" / "spam-advance-fee.eml").read_bytes()
    why = explain(model, raw, top=5)
    spam = [v for _, _, v in why.towards_spam]
    ham = [v for _, _, v in why.towards_ham]
    assert len(spam) == 5 and spam == sorted(spam, reverse=True) and min(spam) > 0
    assert ham == sorted(ham) and all(v < 0 for v in ham)
    texts = model.extractor.texts(message_text(raw, model.extractor.settings.limits))
    own = {"words": set(texts.words), "headers": set(texts.headers),
           "subject": set(texts.subject_tokens), "urls": set(texts.urls)}
    for block, token, _ in why.towards_spam + why.towards_ham:
        parts = token.split() if block == "words" else [token]  # a word pair: both words
        assert set(parts) <= own.get(block, set(parts)), (block, token)
    assert np.isfinite(why.decision)


def _scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner", "scan", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def test_scan_explain_json_and_text(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl"]\n')
    msg = str(REPO / "corpora" / "modern" / "spam-advance-fee.eml")
    run = _scan("--explain", "--json", "-c", str(cfg), msg)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    option = next(h["options"][0] for h in data["hits"] if h["symbol"].startswith("BAYES_"))
    assert f"{data['explain']['probability']:.4f}" == option
    assert set(data["explain"]["blocks"]) == set(BLOCKS)
    text = _scan("--explain", "-c", str(cfg), msg)
    assert text.returncode == 0 and f"classifier: probability {option}" in text.stdout
    assert "towards spam: " in text.stdout and "towards ham: " in text.stdout


def test_scan_explain_without_the_classifier_says_so(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl", "bayes"]\n')
    run = _scan("--explain", "--json", "-c", str(cfg),
                str(REPO / "corpora" / "modern" / "spam-crypto.eml"))
    assert run.returncode == 0 and "the bayes check is off" in run.stderr
    assert "explain" not in json.loads(run.stdout)

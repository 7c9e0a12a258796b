"""Fixtures for the spam classifier tests: our own small messages and synthetic mail.

Synthetic mail is generated from word lists with a seeded RNG, so every run sees the
same bytes; nothing here is copied from a public corpus.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from scanner.ml.features import FeatureSettings

REPO = Path(__file__).resolve().parents[2]
CORPORA = REPO / "corpora" / "ml"
SHARED_CORPUS = REPO.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"

_HAM_WORDS = (
    "meeting", "agenda", "minutes", "project", "review", "patch", "release", "branch",
    "commit", "build", "test", "notes", "draft", "budget", "schedule", "lunch", "thursday",
    "report", "figures", "team", "colleague", "kernel", "driver", "mailing", "list",
    "thread", "question", "answer", "config", "server", "backup", "deploy", "café",
    "hiking", "weekend", "family", "photos", "dinner", "invoice", "attached", "thanks",
    "regards", "cheers"
)
_SPAM_WORDS = (
    "free", "winner", "prize", "claim", "cash", "offer", "limited", "guaranteed", "viagra",
    "pills", "discount", "casino", "bonus", "million", "investment", "opportunity",
    "urgent", "verify", "account", "password", "bank", "lottery", "click", "unsubscribe",
    "cheap", "replica", "watches", "mortgage", "refinance", "loan", "credit", "approved",
    "congratulations", "exclusive", "deal", "act", "now", "risk", "free", "earn", "income"
)


def synthetic_message(spam: bool, index: int) -> bytes:
    """One deterministic synthetic message (ham or spam) for training tests."""
    rng = random.Random((1 if spam else 0) * 100003 + index)
    words = _SPAM_WORDS if spam else _HAM_WORDS
    other = _HAM_WORDS if spam else _SPAM_WORDS
    body_words = [rng.choice(words) for _ in range(rng.randint(30, 80))]
    body_words += [rng.choice(other) for _ in range(rng.randint(0, 6))]
    rng.shuffle(body_words)
    body = " ".join(body_words)
    subject = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
    if spam:
        sender = f"promo{rng.randint(100, 999)}@offers{rng.randint(1, 9)}.example.biz"
        html = f'<html><body><p>{body}</p><a href="http://win{index}.example.biz/x">go</a>'
        return (
            f"From: \"Deals\" <{sender}>\r\nTo: undisclosed-recipients:;\r\n"
            f"Subject: {subject.upper()}!!\r\nMessage-ID: <{index}.{rng.random()}@x>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\n"
            f"{html}</body></html>\r\n"
        ).encode("latin-1", "replace")
    sender = rng.choice(["alice", "bob", "carol", "dave"]) + "@example.org"
    return (
        f"From: Colleague <{sender}>\nTo: me@example.net\nSubject: Re: {subject}\n"
        f"Message-ID: <{index}.ham@example.org>\nIn-Reply-To: <{index - 1}@example.net>\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
        f"Hi,\n\n{body}\n\n-- \nregards\n"
    ).encode()


def write_messages(folder: Path, spam: bool, count: int, start: int = 0) -> Path:
    """Write ``count`` synthetic messages as one-message files under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        (folder / f"{i:05d}.eml").write_bytes(synthetic_message(spam, i))
    return folder


SMALL_SETTINGS = FeatureSettings(hash_bits=16)


@pytest.fixture(scope="session")
def small_settings() -> FeatureSettings:
    """Feature settings with a small hash space, for fast tests."""
    return SMALL_SETTINGS


@pytest.fixture(scope="session")
def settings_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TOML settings file matching :data:`SMALL_SETTINGS` for CLI tests."""
    path = tmp_path_factory.mktemp("settings") / "small.toml"
    path.write_text("hash_bits = 16\n[trainer]\ncalibration_folds = 3\n")
    return path


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Directories with 60 ham and 40 spam synthetic one-message files."""
    root = tmp_path_factory.mktemp("synthetic")
    return write_messages(root / "ham", False, 60), write_messages(root / "spam", True, 40)


@pytest.fixture(scope="session")
def trained_model_path(tmp_path_factory: pytest.TempPathFactory,
                       synthetic_corpus: tuple[Path, Path]) -> Path:
    """A small model trained on the synthetic corpus (do not modify: copy it)."""
    from scanner.ml.corpus import read_corpus
    from scanner.ml.model import save_model
    from scanner.ml.train import TrainOptions, fit_model

    ham, spam = synthetic_corpus
    corpus = read_corpus([str(ham)], [str(spam)], SMALL_SETTINGS, jobs=1)
    model = fit_model(corpus, SMALL_SETTINGS, TrainOptions())
    path = tmp_path_factory.mktemp("model") / "small.model"
    save_model(model, path)
    return path

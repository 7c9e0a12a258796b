"""Benchmark messages from the SpamAssassin corpus tarball (ham and spam, CRLF ends)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scanner.ml.mailbox_reader import iter_messages  # noqa: E402
from scanner.ml.text import strip_mbox_from  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"


def load_corpus(path: Path, count: int, seed: int) -> list[bytes]:
    """``count`` messages from the corpus tarball (ham and spam), CRLF line ends."""
    messages = [raw for kind in ("ham", "spam")
                for _, raw in iter_messages(f"{path}#spamassassin-public/{kind}")]
    if not messages:
        raise SystemExit(f"{path}: no messages under spamassassin-public/ham or spam")
    rng = random.Random(seed)
    rng.shuffle(messages)
    chosen = [messages[i % len(messages)] for i in range(count)]
    return [to_crlf(strip_mbox_from(m)) for m in chosen]


def to_crlf(message: bytes) -> bytes:
    """Normalise every line end to CRLF."""
    return message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")

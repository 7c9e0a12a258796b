"""Benchmark messages from the SpamAssassin corpus tarball (ham and spam, CRLF ends)."""

from __future__ import annotations

import random
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"


def load_corpus(path: Path, count: int, seed: int) -> list[bytes]:
    """``count`` messages from the corpus tarball (ham and spam), CRLF line ends."""
    messages: list[bytes] = []
    with tarfile.open(path, "r:xz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and parts[1] in ("ham", "spam"):
                fh = tar.extractfile(member)
                if fh is not None:
                    messages.append(fh.read())
    if not messages:
        raise SystemExit(f"{path}: no messages under spamassassin-public/ham or spam")
    rng = random.Random(seed)
    rng.shuffle(messages)
    chosen = [messages[i % len(messages)] for i in range(count)]
    return [to_crlf(strip_mbox_from(m)) for m in chosen]


def strip_mbox_from(message: bytes) -> bytes:
    """Drop a leading mbox ``From `` separator line."""
    if message.startswith(b"From "):
        _, _, rest = message.partition(b"\n")
        return rest
    return message


def to_crlf(message: bytes) -> bytes:
    """Normalise every line end to CRLF."""
    return message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")

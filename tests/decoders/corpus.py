"""The public SpamAssassin corpus archive, message by message, for the decoder tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.ml.mailbox_reader import iter_messages


def corpus_messages(corpora_dir: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, raw message) of every ham and spam message in the public corpus
    archive (read as `scanner train` reads ``ARCHIVE#PREFIX``); skips the test when the
    archive is missing."""
    archive = corpora_dir / "spamassassin-public.tar.xz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    for folder in ("ham", "spam"):
        yield from iter_messages(f"{archive}#spamassassin-public/{folder}")

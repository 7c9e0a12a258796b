"""The public SpamAssassin corpus archive, message by message, for the decoder tests."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def corpus_messages(corpora_dir: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, raw message) of every message in the public corpus archive, in
    archive order; skips the test when the archive is missing."""
    archive = corpora_dir / "spamassassin-public.tar.xz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    with tarfile.open(archive) as tf:
        for info in tf:
            if not info.isfile() or "/cmds" in info.name:
                continue
            fh = tf.extractfile(info)
            assert fh is not None
            yield info.name, fh.read()

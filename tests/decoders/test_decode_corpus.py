"""The public SpamAssassin corpus decodes without errors (needs ../shared/corpora)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from decoders import unpack

pytestmark = pytest.mark.corpora
SAMPLE = 400


def test_spamassassin_sample_decodes_cleanly(corpora_dir: Path) -> None:
    archive = corpora_dir / "spamassassin-public.tar.xz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    seen = 0
    with tarfile.open(archive) as tf:
        for info in tf:
            if not info.isfile() or "/cmds" in info.name:
                continue
            fh = tf.extractfile(info)
            assert fh is not None
            raw = fh.read()
            with unpack(raw) as result:
                assert "DECODE_FAIL" not in result.symbols(), (info.name, result.hits)
                assert result.parts[0].detected_type == "mail"
                assert not result.unchecked, (info.name, result.hits)
            seen += 1
            if seen >= SAMPLE:
                break
    assert seen == SAMPLE

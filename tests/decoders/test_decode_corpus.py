"""The public SpamAssassin corpus decodes without errors (needs ../shared/corpora)."""

from __future__ import annotations

from pathlib import Path

import pytest

from decoders import unpack
from tests.decoders.corpus import corpus_messages

pytestmark = pytest.mark.corpora
SAMPLE = 400


def test_spamassassin_sample_decodes_cleanly(corpora_dir: Path) -> None:
    seen = 0
    for name, raw in corpus_messages(corpora_dir):
        with unpack(raw) as result:
            assert "DECODE_FAIL" not in result.symbols(), (name, result.hits)
            assert result.parts[0].detected_type == "mail"
            assert not result.unchecked, (name, result.hits)
        seen += 1
        if seen >= SAMPLE:
            break
    assert seen == SAMPLE

"""Why the classifier scored a message as it did (``scanner scan --explain``).

The model is linear, so its decision is a sum: the bias plus, per feature block, the
dot product of the block's weights with its part of the message's vector. This module
splits the decision that way and names the tokens of the token blocks (words, word
pairs, Subject tokens, header, Received, URL and HTML tokens) that pushed it most
towards spam and towards ham. Character n-gram blocks are shown as block totals only.

A token's share is its bucket's weight times the bucket's value in the vector; tokens
of one block that share a bucket (a hash collision) show the same share.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from scanner.ml.features import BLOCKS, Texts
from scanner.ml.hashing import bucket, hash_pairs, hash_tokens
from scanner.ml.model import Model
from scanner.ml.text import message_text


@dataclass(frozen=True)
class Explanation:
    """The decision of one message, split by block and by token."""

    probability: float
    decision: float
    bias: float
    blocks: dict[str, float]
    towards_spam: list[tuple[str, str, float]]  # (block, token, share), largest first
    towards_ham: list[tuple[str, str, float]]   # most negative first

    def to_dict(self) -> dict[str, object]:
        def rows(items: list[tuple[str, str, float]]) -> list[dict[str, object]]:
            return [{"block": b, "token": t, "share": round(v, 4)} for b, t, v in items]

        return {"probability": round(self.probability, 4), "decision": round(self.decision, 4),
                "bias": round(self.bias, 4),
                "blocks": {k: round(v, 4) for k, v in self.blocks.items()},
                "towards_spam": rows(self.towards_spam), "towards_ham": rows(self.towards_ham)}

    def text(self) -> str:
        """A few lines for a terminal."""
        blocks = ", ".join(f"{k} {v:+.3f}" for k, v in
                           sorted(self.blocks.items(), key=lambda kv: -abs(kv[1])) if v)
        lines = [f"classifier: probability {self.probability:.4f}, decision "
                 f"{self.decision:+.3f} = bias {self.bias:+.3f} + blocks", f"  blocks: {blocks}"]
        for label, items in (("towards spam", self.towards_spam),
                             ("towards ham", self.towards_ham)):
            shown = ", ".join(f"{b}:{t!r} {v:+.3f}" for b, t, v in items) or "(none)"
            lines.append(f"  {label}: {shown}")
        return "\n".join(lines)


def explain(model: Model, raw: bytes, client_name: str | None = None,
            client_addr: str | None = None, sender: str | None = None,
            top: int = 8) -> Explanation:
    """Split ``model``'s decision on ``raw`` by block and name the strongest tokens."""
    extractor = model.extractor
    mt = message_text(raw, extractor.settings.limits)
    texts = extractor.texts(mt, client_name, client_addr, sender)
    hashes = extractor.hashes_of(texts)
    empty = np.zeros(0, dtype=np.uint64)
    blocks: dict[str, float] = {}
    bucket_values: dict[str, dict[int, float]] = {}
    for name in BLOCKS:
        indices, values = extractor.combine(
            {other: hashes[name] if other == name else empty for other in BLOCKS})
        blocks[name] = float(np.dot(model.weights[indices], values))
        bucket_values[name] = dict(zip(indices.tolist(), values.tolist(), strict=True))
    decision = model.bias + sum(blocks.values())
    shares = _token_shares(model, texts, bucket_values)
    shares.sort(key=lambda row: row[2])
    return Explanation(
        probability=model.calibration.probability(decision), decision=decision,
        bias=model.bias, blocks=blocks,
        towards_spam=[row for row in reversed(shares) if row[2] > 0][:top],
        towards_ham=[row for row in shares if row[2] < 0][:top])


def _token_shares(model: Model, texts: Texts, bucket_values: dict[str, dict[int, float]]
                  ) -> list[tuple[str, str, float]]:
    """(block, token, share) of every distinct token of the token blocks."""
    bits = model.extractor.settings.hash_bits
    word_hashes = hash_tokens(texts.words, "w")
    named: list[tuple[str, list[str], np.ndarray]] = [
        ("words", texts.words, word_hashes),
        ("subject", texts.subject_tokens, hash_tokens(texts.subject_tokens, "s")),
        ("headers", texts.headers, hash_tokens(texts.headers, "h")),
        ("received", texts.received, hash_tokens(texts.received, "r")),
        ("urls", texts.urls, hash_tokens(texts.urls, "u")),
        ("html", texts.html, hash_tokens(texts.html, "t")),
    ]
    if model.extractor.settings.word_bigrams and len(texts.words) > 1:
        pairs = [f"{a} {b}" for a, b in itertools.pairwise(texts.words)]
        named.append(("words", pairs, hash_pairs(word_hashes, "w2")))
    rows: dict[tuple[str, str], float] = {}
    for block, tokens, hashes in named:
        values = bucket_values[block]
        for token, index in zip(tokens, bucket(hashes, bits).tolist(), strict=True):
            if (block, token) not in rows and index in values:
                rows[(block, token)] = float(model.weights[index]) * values[index]
    return [(block, token, share) for (block, token), share in rows.items()]

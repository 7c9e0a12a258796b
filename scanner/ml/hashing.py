"""Deterministic feature hashing (no per-process salt, no sklearn) for the classifier.

Python's ``hash()`` is salted per process, so features are hashed here with CRC-32 for
discrete tokens and a vectorised multiply-xorshift mix for character n-grams. The same
text gives the same indices on every machine and every run, which the saved model needs.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_NGRAM_MULTIPLIERS = (
    np.uint64(0xA24BAED4963EE407),
    np.uint64(0x9FB21C651E98DF25),
    np.uint64(0xC2B2AE3D27D4EB4F),
    np.uint64(0x165667B19E3779F9),
    np.uint64(0xD6E8FEB86659FD93),
)


def mix(values: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (splitmix64 style) applied element-wise; wraps modulo 2**64.

    It turns keys from :func:`token_keys` / :func:`char_ngram_keys` into hashes. Being
    element-wise, mixing several key arrays concatenated equals concatenating their
    mixed arrays; the extractor mixes all of a message's keys in one call."""
    z = values * _M1
    z ^= z >> np.uint64(30)
    z *= _M2
    z ^= z >> np.uint64(27)
    z *= _M3
    z ^= z >> np.uint64(31)
    return z


def namespace_seed(namespace: str) -> int:
    """A 32-bit seed that separates one feature family from another."""
    return zlib.crc32(namespace.encode("utf-8"))


def token_keys(tokens: Iterable[str], namespace: str) -> np.ndarray:
    """The unmixed keys of :func:`hash_tokens`."""
    seed = namespace_seed(namespace)
    seq = tokens if isinstance(tokens, list) else list(tokens)
    known: dict[str, int] = {}
    for token in seq:
        if token not in known:
            known[token] = zlib.crc32(token.encode("utf-8", "surrogatepass"), seed)
    raw = np.fromiter((known[t] for t in seq), dtype=np.uint64, count=len(seq))
    return raw + np.uint64(seed << 32)


def hash_tokens(tokens: Iterable[str], namespace: str) -> np.ndarray:
    """Hash string tokens of one family to unsigned 64-bit values (before bucketing).

    Each distinct token is hashed once (words repeat a lot within a message).
    """
    return mix(token_keys(tokens, namespace))


def hash_pairs(hashes: np.ndarray, namespace: str) -> np.ndarray:
    """Hash consecutive pairs of already hashed tokens (word bigrams)."""
    if hashes.size < 2:
        return np.zeros(0, dtype=np.uint64)
    seed = np.uint64(namespace_seed(namespace))
    return mix(hashes[:-1] * _NGRAM_MULTIPLIERS[0] + hashes[1:] + seed)


def hash_char_ngrams(text: str, n: int, namespace: str) -> np.ndarray:
    """Hash every character n-gram of ``text`` (by code point), vectorised with numpy."""
    return mix(char_ngram_keys(text, n, namespace))


def char_ngram_keys(text: str, n: int, namespace: str) -> np.ndarray:
    """The unmixed keys of :func:`hash_char_ngrams`."""
    if n < 1 or n > len(_NGRAM_MULTIPLIERS):
        raise ValueError(f"character n-gram length must be 1..{len(_NGRAM_MULTIPLIERS)}")
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    if codes.size < n:
        return np.zeros(0, dtype=np.uint64)
    codes = codes.astype(np.uint64)
    count = codes.size - n + 1
    acc = np.full(count, namespace_seed(namespace), dtype=np.uint64)
    for offset in range(n):
        acc += codes[offset : offset + count] * _NGRAM_MULTIPLIERS[offset]
    return acc


def bucket(hashes: np.ndarray, bits: int) -> np.ndarray:
    """Map 64-bit hashes to ``2**bits`` buckets (top bits, the best mixed ones)."""
    return (hashes >> np.uint64(64 - bits)).astype(np.int64)

"""Feature extraction for the spam classifier: message -> sparse hashed vector.

Feature families ("blocks"), each hashed into one ``2**hash_bits`` space, weighted by
``1 + log(count)``, L2-normalised per block and scaled by the block's weight:

* ``chars``    character n-grams (default 4) of the lower-cased body text
* ``words``    body word unigrams and bigrams
* ``subject``  Subject words, shape tokens and character n-grams
* ``headers``  whitelisted header tokens, MIME part types, charsets, attachment names
* ``hdrchars`` character n-grams of From, Reply-To, To, X-Mailer/User-Agent, Content-Type
* ``received`` the connecting client (XFORWARD or first external hop) and relays
* ``urls``     URL hosts, registered domains, TLDs, path words
* ``urlchars`` character n-grams of the (first 50) URLs
* ``html``     HTML tag names

The settings travel inside the model file, so scoring always extracts exactly what the
model was trained on. Only numpy and the standard library are needed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from scanner.ml.deobfuscate import deobfuscate
from scanner.ml.hashing import (
    bucket,
    char_ngram_keys,
    hash_pairs,
    hash_tokens,
    mix,
    token_keys,
)
from scanner.ml.text import ExtractLimits, MessageText, message_text
from scanner.ml.tokens import (
    alignment_tokens,
    bucket_count,
    client_and_relays,
    header_tokens,
    html_tokens,
    part_tokens,
    received_tokens,
    subject_tokens,
    url_tokens,
)

FEATURE_VERSION = 1
BLOCKS = ("chars", "words", "subject", "headers", "hdrchars", "received", "urls", "urlchars",
          "html")
_MAX_URLCHAR_URLS = 50
_HDRCHAR_HEADERS = ("from", "reply-to", "to", "x-mailer", "user-agent", "content-type")
_WORDS = re.compile(r"[^\W_]{2,24}")
# Digits become 0 in text n-grams and words: dates, years, versions and numbers in
# general tie mail to its time ("2002" was the strongest ham word of the 2002 corpus).
_DIGITS = str.maketrans("123456789", "000000000")


@dataclass(frozen=True, slots=True)
class FeatureSettings:
    """Everything that decides which features a message yields (stored in the model)."""

    version: int = FEATURE_VERSION
    hash_bits: int = 20
    char_ngram: int = 4
    max_text_chars: int = 20000
    word_bigrams: bool = True
    block_weights: dict[str, float] = field(default_factory=lambda: {
        "chars": 1.0, "words": 1.0, "subject": 0.5, "headers": 0.7, "hdrchars": 1.0,
        "received": 0.3, "urls": 0.5, "urlchars": 0.5, "html": 0.3,
    })
    internal_hosts: tuple[str, ...] = ()
    redact: tuple[str, ...] = ()
    limits: ExtractLimits = field(default_factory=ExtractLimits)
    # body and Subject text also yield the words hidden by invisible characters, styled
    # and look-alike letters (scanner.ml.deobfuscate); off by default (models/README.md
    # has the measurement) and written to the model file only when on, so files from
    # before the setting and files without it are the same
    fold_obfuscation: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the model file."""
        data = asdict(self)
        data["internal_hosts"] = list(self.internal_hosts)
        data["redact"] = list(self.redact)
        if not self.fold_obfuscation:
            del data["fold_obfuscation"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSettings:
        """Rebuild settings from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown feature settings: {', '.join(sorted(unknown))}")
        values = dict(data)
        if "limits" in values:
            values["limits"] = ExtractLimits(**values["limits"])
        for name in ("internal_hosts", "redact"):
            if name in values:
                values[name] = tuple(str(v).lower() for v in values[name])
        if "block_weights" in values:
            weights = {str(k): float(v) for k, v in values["block_weights"].items()}
            if set(weights) - set(BLOCKS):
                raise ValueError(f"unknown feature blocks: {sorted(set(weights) - set(BLOCKS))}")
            values["block_weights"] = weights
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ``ValueError`` for settings this code cannot apply."""
        if self.version != FEATURE_VERSION:
            raise ValueError(f"feature version {self.version} is not supported "
                             f"(this code implements {FEATURE_VERSION})")
        if not 10 <= self.hash_bits <= 24:
            raise ValueError("hash_bits must be between 10 and 24")
        if not 1 <= self.char_ngram <= 5:
            raise ValueError("char_ngram must be between 1 and 5")

    @property
    def dimension(self) -> int:
        return 1 << self.hash_bits


@dataclass(frozen=True, slots=True)
class Texts:
    """What the blocks of one message are hashed from (:meth:`Extractor.texts`)."""

    body: str  # cleaned, lower-case, digits as 0: the chars block and the words
    words: list[str]
    subject: str
    subject_tokens: list[str]
    headers: list[str]
    header_text: str  # the hdrchars block
    received: list[str]
    urls: list[str]
    url_text: str  # the urlchars block
    html: list[str]


class Extractor:
    """Turns messages into sparse vectors according to one :class:`FeatureSettings`."""

    def __init__(self, settings: FeatureSettings) -> None:
        settings.validate()
        self.settings = settings
        self._weights = np.array([settings.block_weights.get(b, 0.0) for b in BLOCKS])
        self._redact_words = tuple(p.lower() for p in settings.redact if p)
        patterns = [re.escape(p) for p in self._redact_words]
        self._redact = re.compile("|".join(patterns), re.I) if patterns else None

    def vector(
        self,
        raw: bytes | MessageText,
        client_name: str | None = None,
        client_addr: str | None = None,
        sender: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(indices int64, values float32)`` of one message, indices sorted and unique."""
        mt = raw if isinstance(raw, MessageText) else message_text(raw, self.settings.limits)
        blocks = self.block_hashes(mt, client_name, client_addr, sender)
        return self._combine(blocks)

    def texts(
        self,
        mt: MessageText,
        client_name: str | None = None,
        client_addr: str | None = None,
        sender: str | None = None,
    ) -> Texts:
        """The cleaned texts and token lists the blocks are hashed from."""
        s = self.settings
        body_text, subject_text = mt.body_text[: s.max_text_chars * 2], mt.header("subject")
        if s.fold_obfuscation:
            body_text, subject_text = _unmasked(body_text), _unmasked(subject_text)
        body = self._clean(body_text.lower(), is_lower=True)
        body = " ".join(body.split())[: s.max_text_chars].translate(_DIGITS)
        subject = " ".join(self._clean(subject_text).split())
        subject = subject.translate(_DIGITS)
        client, relays = client_and_relays(mt, s.internal_hosts, client_name, client_addr)
        header_list = list(header_tokens(mt, sender)) + list(part_tokens(mt))
        header_list.extend(alignment_tokens(mt, client, sender))
        header_list.append(f"body:len={bucket_count(len(body) // 64)}")
        header_list.append(f"body:caps={_caps_class(body_text[: s.max_text_chars])}")
        header_lines = [
            f"{name}: {mt.header(name)}" for name in _HDRCHAR_HEADERS if mt.header(name)
        ]
        return Texts(
            body=body,
            words=_WORDS.findall(body),
            subject=subject,
            subject_tokens=self._keep(subject_tokens(subject)),
            headers=self._keep(header_list),
            header_text=self._clean("\n".join(header_lines).lower(), is_lower=True
                                    ).translate(_DIGITS),
            received=self._keep(received_tokens(client, relays)),
            urls=self._keep(url_tokens(mt.urls)),
            url_text=self._clean(" ".join(mt.urls[:_MAX_URLCHAR_URLS]).lower(), is_lower=True
                                 ).translate(_DIGITS),
            html=list(html_tokens(mt.html_tags)),
        )

    def block_hashes(
        self,
        mt: MessageText,
        client_name: str | None = None,
        client_addr: str | None = None,
        sender: str | None = None,
    ) -> dict[str, np.ndarray]:
        """The raw 64-bit hashes of every block (before bucketing and weighting)."""
        return self.hashes_of(self.texts(mt, client_name, client_addr, sender))

    def hashes_of(self, t: Texts) -> dict[str, np.ndarray]:
        """:meth:`block_hashes` of texts already made by :meth:`texts`."""
        n = self.settings.char_ngram
        word_hashes = hash_tokens(t.words, "w")
        word_parts = [word_hashes]
        if self.settings.word_bigrams:
            word_parts.append(hash_pairs(word_hashes, "w2"))
        # Unmixed keys of every other block, finished by one mix() call for all of them
        # (element-wise, so the hashes are the same as block by block, at a fraction
        # of the numpy calls).
        keys = {
            "hdrchars": char_ngram_keys(t.header_text, n, "hc"),
            "chars": char_ngram_keys(t.body, n, "c"),
            "subject": np.concatenate([
                token_keys(t.subject_tokens, "s"),
                char_ngram_keys(" " + t.subject.lower() + " ", n, "sc"),
            ]),
            "headers": token_keys(t.headers, "h"),
            "received": token_keys(t.received, "r"),
            "urls": token_keys(t.urls, "u"),
            "urlchars": char_ngram_keys(t.url_text, n, "uc"),
            "html": token_keys(t.html, "t"),
        }
        mixed = mix(np.concatenate(list(keys.values())))
        blocks = {"words": np.concatenate(word_parts)}
        start = 0
        for name, block in keys.items():
            blocks[name] = mixed[start : start + block.size]
            start += block.size
        return blocks

    def combine(self, blocks: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, values)`` of block hashes: the vector of :meth:`vector`."""
        return self._combine(blocks)

    def _clean(self, text: str, is_lower: bool = False) -> str:
        """Remove redacted strings (cheap substring test first: they are rare).

        ``is_lower``: the caller lower-cased ``text`` already."""
        if self._redact is None:
            return text
        lower = text if is_lower else text.lower()
        if not any(word in lower for word in self._redact_words):
            return text
        return self._redact.sub(" ", text)

    def _keep(self, tokens: Iterable[str]) -> list[str]:
        """Drop tokens that contain a redacted string (tokens are lower-case)."""
        tokens = list(tokens)
        if not self._redact_words:
            return tokens
        joined = "\n".join(tokens)
        words = [word for word in self._redact_words if word in joined]
        if not words:
            return tokens
        return [t for t in tokens if not any(word in t for word in words)]

    def _combine(self, blocks: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Bucket, count, log-weight and L2-normalise each block, then merge the blocks.

        One ``np.unique`` over all blocks at once (the block number is put above the
        bucket bits), which is several times cheaper than one per block.
        """
        s = self.settings
        bits = s.hash_bits
        keys = []
        for number, name in enumerate(BLOCKS):
            hashes = blocks[name]
            if hashes.size and s.block_weights.get(name, 0.0) != 0.0:
                keys.append(bucket(hashes, bits) + (number << bits))
        if not keys:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        unique, counts = np.unique(np.concatenate(keys), return_counts=True)
        values = 1.0 + np.log(counts.astype(np.float64))
        block = unique >> bits
        norms = np.sqrt(np.bincount(block, weights=values * values, minlength=len(BLOCKS)))
        scale = np.zeros(len(BLOCKS))
        nonzero = norms > 0
        scale[nonzero] = self._weights[nonzero] / norms[nonzero]
        values *= scale[block]
        indices = unique & ((1 << bits) - 1)
        order = np.argsort(indices, kind="stable")
        indices = indices[order]
        values = values[order]
        starts = np.flatnonzero(np.concatenate(([True], indices[1:] != indices[:-1])))
        return indices[starts], np.add.reduceat(values, starts).astype(np.float32)


def _unmasked(text: str) -> str:
    """``text`` followed by the words its disguises hide (scanner.ml.deobfuscate).

    The text stays as written (a disguise is evidence in itself); the plain words it
    hides are appended, so "acc<U+200B>ount" or "Pаypal" also yield "account" and
    "paypal" and their character n-grams."""
    folded = deobfuscate(text)
    if folded == text:
        return text
    seen = set(_WORDS.findall(text.lower()))
    hidden = [w for w in _WORDS.findall(folded.lower()) if w not in seen]
    return text + "\n" + " ".join(hidden) if hidden else text


_UPPER = bytes(range(65, 91))
_LOWER = bytes(range(97, 123))


def _caps_class(text: str) -> str:
    """Share of upper-case among ASCII letters, in tenths (a "shouting" signal)."""
    data = text.encode("ascii", "ignore")
    upper = len(data) - len(data.translate(None, _UPPER))  # deleting counts, in C
    letters = upper + len(data) - len(data.translate(None, _LOWER))
    if letters < 20:
        return "few_letters"
    return str(min(9, 10 * upper // letters))

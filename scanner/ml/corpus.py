"""Labelled training mail as feature rows: reading, de-duplication, parallel extraction.

Messages are read with :mod:`scanner.ml.mailbox_reader`, de-duplicated by SHA-256 (a
message filed as both ham and spam is dropped and reported), turned into feature vectors
in worker processes, and finally sorted by digest, so that the same mail always gives
the same rows in the same order whatever the order or format it was read in.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scanner.ml.features import Extractor, FeatureSettings
from scanner.ml.mailbox_reader import ProblemHandler, iter_messages
from scanner.ml.model import message_digest
from scanner.ml.progress import Progress

Row = tuple[np.ndarray, np.ndarray]
_worker_extractor: Extractor | None = None


@dataclass(slots=True)
class Corpus:
    """Feature rows with labels (1 = spam), sorted by message digest."""

    digests: list[bytes] = field(default_factory=list)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    rows: list[Row] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    duplicates: int = 0
    conflicts: int = 0
    problems: int = 0

    @property
    def ham(self) -> int:
        return int((self.labels == 0).sum())

    @property
    def spam(self) -> int:
        return int((self.labels == 1).sum())

    def subset(self, mask: np.ndarray) -> Corpus:
        """The rows where ``mask`` is true (order kept)."""
        keep = np.flatnonzero(mask)
        return Corpus(
            digests=[self.digests[i] for i in keep],
            labels=self.labels[keep],
            rows=[self.rows[i] for i in keep],
            names=[self.names[i] for i in keep],
        )

    def matrix(self, dimension: int) -> Any:
        """The rows as a ``scipy.sparse`` CSR matrix (imports scipy: training only)."""
        import scipy.sparse as sp

        lengths = np.fromiter((r[0].size for r in self.rows), dtype=np.int64,
                              count=len(self.rows))
        indptr = np.zeros(len(self.rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        if self.rows:
            indices = np.concatenate([r[0] for r in self.rows]).astype(np.int32)
            data = np.concatenate([r[1] for r in self.rows]).astype(np.float64)
        else:
            indices = np.zeros(0, dtype=np.int32)
            data = np.zeros(0, dtype=np.float64)
        return sp.csr_matrix((data, indices, indptr), shape=(len(self.rows), dimension))


def _init_worker(settings: dict[str, Any]) -> None:
    global _worker_extractor
    _worker_extractor = Extractor(FeatureSettings.from_dict(settings))


def _extract(raw: bytes) -> Row:
    """A message's row; indices as int32 (bucket numbers below 2**hash_bits, at most
    2**24): a third less memory per stored feature than the extractor's int64."""
    assert _worker_extractor is not None
    indices, values = _worker_extractor.vector(raw)
    return indices.astype(np.int32), values


def default_jobs() -> int:
    """Worker processes to use: one per available CPU."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def read_corpus(
    ham_paths: Sequence[str],
    spam_paths: Sequence[str],
    settings: FeatureSettings,
    jobs: int = 0,
    on_problem: ProblemHandler | None = None,
    progress: Progress | None = None,
) -> Corpus:
    """Read, de-duplicate and featurise labelled mail; missing paths raise FileNotFoundError."""
    for path in [*ham_paths, *spam_paths]:
        if not os.path.exists(path) and not os.path.isfile(path.partition("#")[0]):
            raise FileNotFoundError(f"{path}: no such file or directory")
    corpus = Corpus()
    seen: dict[bytes, int] = {}
    labels: list[int] = []
    read = [0, 0]  # unique ham, unique spam read so far

    def report(name: str, reason: str) -> None:
        corpus.problems += 1
        if on_problem is not None:
            on_problem(name, reason)

    def unique_messages() -> Iterator[bytes]:
        for label, paths in ((0, ham_paths), (1, spam_paths)):
            for path in paths:
                for name, raw in iter_messages(path, report):
                    digest = message_digest(raw)
                    if digest in seen:
                        if labels[seen[digest]] != label:
                            labels[seen[digest]] = -1  # filed as both: drop it later
                            corpus.conflicts += 1
                        else:
                            corpus.duplicates += 1
                        continue
                    seen[digest] = len(labels)
                    labels.append(label)
                    read[label] += 1
                    corpus.digests.append(digest)
                    corpus.names.append(name)
                    yield raw

    jobs = jobs or default_jobs()
    rows: list[Row] = []
    settings_dict = settings.to_dict()
    if jobs == 1:
        _init_worker(settings_dict)
        results: Iterator[Row] = map(_extract, unique_messages())
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(
            jobs, initializer=_init_worker, initargs=(settings_dict,))
        results = pool.imap(_extract, unique_messages(), chunksize=8)
    try:
        for row in results:
            rows.append(row)
            if progress is not None:
                progress.update(len(rows), None, ham=read[0], spam=read[1],
                                dup=corpus.duplicates, bad=corpus.problems)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if progress is not None:
        progress.update(len(rows), None, ham=read[0], spam=read[1],
                        dup=corpus.duplicates, bad=corpus.problems)
        progress.finish()
    order = sorted((d, i) for i, d in enumerate(corpus.digests) if labels[i] >= 0)
    corpus.rows = [rows[i] for _, i in order]
    corpus.names = [corpus.names[i] for _, i in order]
    corpus.labels = np.array([labels[i] for _, i in order], dtype=np.int8)
    corpus.digests = [d for d, _ in order]
    return corpus


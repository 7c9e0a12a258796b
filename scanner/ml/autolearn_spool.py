"""The autolearn spool: messages queued for learning, and learning them into the model.

A worker that decides to learn a message (:mod:`scanner.ml.autolearn`) writes its
feature vector, the one it was just scored with, as one small file into the spool
directory (``<digest>.spam`` or ``<digest>.ham``, msgpack: format version, the feature
settings' fingerprint, the digest, the indices and values); the same message again is
the same file. Every ``autolearn_interval`` seconds a worker takes the model's writer
lock without waiting (a ``scanner learn`` or the other worker holding it: next time),
learns every queued file with the PA-I step ``scanner learn`` uses, writes the model
atomically and removes the files it learnt. The master's file watch then reloads the
new model in every worker, as after ``scanner learn``.

The raw message is never stored, only hashed features. Losing a queued file loses
one lesson, never mail; so files are not fsynced. A file written for other feature
settings (the model was retrained with another features file meanwhile) is dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field

import msgpack
import numpy as np

from scanner.ml.errors import ModelError
from scanner.ml.features import FeatureSettings
from scanner.ml.learn import model_lock
from scanner.ml.model import Features, load_model, save_model

log = logging.getLogger("scanner")

FORMAT = 1
MAX_FILE_BYTES = 4 << 20
MAX_PER_RUN = 5000
"""Files learnt per run at most (the rest wait for the next)."""
STALE_TMP_SECONDS = 3600.0
"""A half-written file (its writer died) older than this is removed."""


def fingerprint(settings: FeatureSettings) -> bytes:
    """8 bytes that differ between feature settings (a record of other settings is
    useless to a model: its indices hash other tokens)."""
    data = json.dumps(settings.to_dict(), sort_keys=True, default=str).encode()
    return hashlib.sha256(data).digest()[:8]


def write_record(spool: str, digest: bytes, spam: bool, features: Features,
                 settings_print: bytes) -> str:
    """Queue one message; returns the file's path. Raises OSError."""
    indices, values = features
    record = msgpack.packb({
        "v": FORMAT, "fp": settings_print, "digest": digest, "spam": spam,
        "i": np.asarray(indices, dtype="<u4").tobytes(),
        "x": np.asarray(values, dtype="<f4").tobytes(),
    })
    name = f"{digest.hex()}.{'spam' if spam else 'ham'}"
    tmp = os.path.join(spool, f".{name}.{os.getpid()}.tmp")
    if not os.path.isdir(spool):  # the first message queued: make the directory
        os.makedirs(spool, mode=0o700, exist_ok=True)
    with open(tmp, "wb") as handle:
        handle.write(record)
    os.replace(tmp, os.path.join(spool, name))
    return os.path.join(spool, name)


@dataclass(frozen=True, slots=True)
class Record:
    digest: bytes
    spam: bool
    settings_print: bytes
    features: Features


def read_record(path: str) -> Record:
    """One queued file; raises ValueError (or OSError) for a damaged one."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError("too large")
    obj = msgpack.unpackb(data)
    if not isinstance(obj, dict) or obj.get("v") != FORMAT:
        raise ValueError("not an autolearn record of this version")
    digest, raw_i, raw_x = obj.get("digest"), obj.get("i"), obj.get("x")
    if not (isinstance(digest, bytes) and len(digest) == 32 and isinstance(raw_i, bytes)
            and isinstance(raw_x, bytes) and len(raw_i) == len(raw_x)
            and len(raw_i) % 4 == 0 and isinstance(obj.get("spam"), bool)
            and isinstance(obj.get("fp"), bytes)):
        raise ValueError("fields missing or of the wrong type")
    indices = np.frombuffer(raw_i, dtype="<u4").astype(np.int64)
    values = np.frombuffer(raw_x, dtype="<f4").astype(np.float32)
    return Record(digest, obj["spam"], obj["fp"], (indices, values))


@dataclass(slots=True)
class Applied:
    """What one run of :func:`apply_spool` did."""

    spam: int = 0
    ham: int = 0
    unchanged: int = 0
    duplicate: int = 0
    stale: int = 0
    damaged: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.spam + self.ham + self.unchanged + self.duplicate + self.stale + \
            len(self.damaged)

    def text(self) -> str:
        parts = [f"{self.spam} spam and {self.ham} ham learnt"]
        for name, count in (("already on the right side", self.unchanged),
                            ("learnt before", self.duplicate),
                            ("of other feature settings, dropped", self.stale),
                            ("damaged, dropped", len(self.damaged))):
            if count:
                parts.append(f"{count} {name}")
        return ", ".join(parts)


def queued(spool: str) -> list[str]:
    """The queued files, oldest first (stale half-written ones are removed here)."""
    names: list[tuple[float, str]] = []
    now = time.time()
    with os.scandir(spool) as entries:
        for entry in entries:
            try:
                mtime = entry.stat().st_mtime
            except OSError:
                continue
            if entry.name.startswith("."):
                if entry.name.endswith(".tmp") and now - mtime > STALE_TMP_SECONDS:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                continue
            if entry.name.endswith((".spam", ".ham")):
                names.append((mtime, entry.path))
    return [path for _, path in sorted(names)]


def apply_spool(model_path: str, spool: str, limit: int = MAX_PER_RUN) -> Applied | None:
    """Learn the queued files into ``model_path``. None when nothing is queued or
    another writer holds the model (then the files wait for the next run); raises
    :class:`ModelError` when the model cannot be read or written (the files stay)."""
    try:
        paths = queued(spool)[:limit]
    except FileNotFoundError:  # nothing was ever queued
        return None
    if not paths:
        return None
    held = contextlib.ExitStack()
    try:
        held.enter_context(model_lock(model_path, timeout=0.0))
    except ModelError as exc:
        if "timed out" in str(exc):  # another writer: the files wait for the next run
            return None
        raise
    with held:
        return _learn(model_path, paths)


def _learn(model_path: str, paths: list[str]) -> Applied:
    model = load_model(model_path)
    settings_print = fingerprint(model.settings)
    done = Applied()
    for path in paths:
        try:
            record = read_record(path)
        except (OSError, ValueError, msgpack.UnpackException) as exc:
            done.damaged.append(f"{os.path.basename(path)} ({exc})")
            continue
        if record.settings_print != settings_print:
            done.stale += 1
            continue
        outcome = model.learn_features(record.digest, record.features, record.spam)
        if outcome == "learned":
            if record.spam:
                done.spam += 1
            else:
                done.ham += 1
        elif outcome == "unchanged":
            done.unchanged += 1
        else:
            done.duplicate += 1
    if done.spam or done.ham or done.unchanged:
        save_model(model, model_path)  # raises ModelError: the files stay queued
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return done

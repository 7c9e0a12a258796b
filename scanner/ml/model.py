"""The trained spam model: a hashed-feature linear classifier with Platt calibration.

Scoring needs only numpy and the weights in the file (no scikit-learn import, ~4 MB of
memory for 2**20 weights). :func:`load_model` validates the whole file before returning,
so a half-written or foreign file is never used; :func:`save_model` writes atomically.
Online learning (``scanner learn``, ``scanner train --update``) applies passive-aggressive
(PA-I) steps to the stored weights: a message is learned until it sits on the right side
of the decision boundary with margin 1, with the step capped by ``aggressiveness``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from scanner.ml import modelformat
from scanner.ml.calibration import Calibration
from scanner.ml.errors import ModelError
from scanner.ml.features import Extractor, FeatureSettings
from scanner.ml.text import strip_mbox_from

Features = tuple[np.ndarray, np.ndarray]
MAX_LEARNED = 20000
DEFAULT_AGGRESSIVENESS = 0.25  # see models/README.md, "Online learning"


def message_digest(raw: bytes) -> bytes:
    """The de-duplication key: SHA-256 of the message without its mbox ``From `` line,
    with CRLF line ends made LF and trailing newlines dropped (so the same message read
    from an mbox, a Maildir or an SMTP stream has one digest)."""
    body = strip_mbox_from(raw).replace(b"\r\n", b"\n").rstrip(b"\n")
    return hashlib.sha256(body).digest()


class Model:
    """A loaded or freshly trained model. Not thread-safe for :meth:`update`."""

    def __init__(
        self,
        settings: FeatureSettings,
        weights: np.ndarray,
        bias: float,
        calibration: Calibration,
        training: dict[str, Any] | None = None,
        learned: OrderedDict[bytes, bool] | None = None,
        value_dtype: str = "float16",
        path: str | None = None,
    ) -> None:
        if weights.shape != (settings.dimension,):
            raise ModelError(f"{path or 'model'}: weight vector does not match hash_bits")
        self.settings = settings
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self.bias = float(bias)
        self.calibration = calibration
        self.training: dict[str, Any] = dict(training or {})
        self.learned: OrderedDict[bytes, bool] = learned if learned is not None else OrderedDict()
        self.value_dtype = value_dtype
        self.path = path
        self.extractor = Extractor(settings)

    # -- scoring ---------------------------------------------------------------------
    def features(
        self,
        raw: bytes,
        client_name: str | None = None,
        client_addr: str | None = None,
        sender: str | None = None,
    ) -> Features:
        """The sparse feature vector of a raw message under this model's settings."""
        return self.extractor.vector(raw, client_name, client_addr, sender)

    def decision(self, features: Features) -> float:
        """The raw linear score (positive leans spam)."""
        indices, values = features
        return float(np.dot(self.weights[indices], values)) + self.bias

    def score(self, features: Features) -> float:
        """Calibrated spam probability of a feature vector, in [0, 1]."""
        return self.calibration.probability(self.decision(features))

    def score_message(
        self,
        raw: bytes,
        client_name: str | None = None,
        client_addr: str | None = None,
        sender: str | None = None,
    ) -> float:
        """Calibrated spam probability of a raw message.

        ``client_name``/``client_addr`` are Postfix's XFORWARD NAME and ADDR (``None`` or
        ``"unknown"`` when not known); ``sender`` is the envelope sender, used when the
        message has no Return-Path header yet (it has none before final delivery).
        """
        return self.score(self.features(raw, client_name, client_addr, sender))

    # -- online learning ---------------------------------------------------------------
    def update(self, features: Features, spam: bool,
               aggressiveness: float = DEFAULT_AGGRESSIVENESS) -> bool:
        """One PA-I step towards the label; returns whether the weights changed."""
        indices, values = features
        target = 1.0 if spam else -1.0
        loss = 1.0 - target * self.decision(features)
        norm = float(np.dot(values, values))
        if loss <= 0.0 or norm == 0.0:
            return False
        tau = min(aggressiveness, loss / norm)
        self.weights[indices] += np.float32(tau * target) * values
        return True

    def learn(self, raw: bytes, spam: bool, aggressiveness: float | None = None) -> str:
        """Learn one raw message; returns ``"learned"``, ``"unchanged"`` or ``"duplicate"``."""
        return self.learn_features(message_digest(raw), self.features(raw), spam,
                                   aggressiveness)

    def learn_features(self, digest: bytes, features: Features, spam: bool,
                       aggressiveness: float | None = None) -> str:
        """Learn one message given its digest and features (see :meth:`learn`).

        The last :data:`MAX_LEARNED` learned digests are remembered, so learning the
        same message twice with the same label is a no-op ("duplicate"), while
        relearning it with the other label (a correction) is applied.
        """
        key = digest[:8]
        if self.learned.get(key) is spam:
            return "duplicate"
        if aggressiveness is None:
            aggressiveness = float(self.training.get("aggressiveness", DEFAULT_AGGRESSIVENESS))
        changed = self.update(features, spam, aggressiveness)
        self.learned.pop(key, None)
        self.learned[key] = spam
        while len(self.learned) > MAX_LEARNED:
            self.learned.popitem(last=False)
        online = self.training.setdefault("online", {"ham": 0, "spam": 0})
        label = "spam" if spam else "ham"
        online[label] = int(online.get(label, 0)) + 1
        return "learned" if changed else "unchanged"

    # -- serialisation -----------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The model file contents (deterministic)."""
        learned = b"".join(k + (b"\x01" if v else b"\x00") for k, v in self.learned.items())
        payload = {
            "feature_settings": self.settings.to_dict(),
            "linear": {"bias": self.bias, **modelformat.pack_weights(self.weights,
                                                                    self.value_dtype)},
            "calibration": {"method": "platt", "a": self.calibration.a,
                            "b": self.calibration.b},
            "training": self.training,
            "learned": learned,
        }
        return modelformat.encode(payload)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<model>") -> Model:
        """Decode and fully validate model file contents."""
        payload = modelformat.decode(data, name)
        try:
            settings = FeatureSettings.from_dict(payload["feature_settings"])
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{name}: invalid feature settings ({exc})") from exc
        linear = payload["linear"]
        weights = modelformat.unpack_weights(linear, name)
        if weights.size != settings.dimension:
            raise ModelError(f"{name}: weight vector does not match hash_bits")
        calib = payload["calibration"]
        if calib.get("method") != "platt":
            raise ModelError(f"{name}: unknown calibration {calib.get('method')!r}")
        calibration = Calibration(a=modelformat.finite(calib, "a", name),
                                  b=modelformat.finite(calib, "b", name))
        learned_blob = payload.get("learned", b"")
        if not isinstance(learned_blob, bytes) or len(learned_blob) % 9:
            raise ModelError(f"{name}: invalid learned-message list")
        learned: OrderedDict[bytes, bool] = OrderedDict()
        for pos in range(0, len(learned_blob), 9):
            learned[learned_blob[pos : pos + 8]] = learned_blob[pos + 8] == 1
        return cls(settings, weights, modelformat.finite(linear, "bias", name), calibration,
                   training=payload["training"], learned=learned,
                   value_dtype=str(linear["value_dtype"]), path=name)


def load_model(path: str | os.PathLike[str]) -> Model:
    """Read and validate a model file; raises :class:`ModelError` naming the file."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            # Read what the file holds, not the limit: read(n) reserves n bytes first,
            # and a 256 MiB reservation fails under Dovecot's default vsz_limit (256 MB)
            # for the `scanner learn` it runs.
            size = os.fstat(handle.fileno()).st_size
            if size > modelformat.MAX_FILE_BYTES:
                raise ModelError(f"{name}: model file is too large")
            data = handle.read(size + 1)
    except OSError as exc:
        raise ModelError(f"{name}: cannot read model file ({exc.strerror or exc})") from exc
    if len(data) > modelformat.MAX_FILE_BYTES:
        raise ModelError(f"{name}: model file is too large")
    return Model.from_bytes(data, name)


def _mode_of(path: Path, default: int) -> int:
    """The permission bits of an existing file (a model shared by a group stays 0664)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return default


def save_model(model: Model, path: str | os.PathLike[str]) -> None:
    """Write the model atomically: temp file in the same directory, fsync, rename."""
    target = Path(path)
    data = model.to_bytes()
    directory = target.parent if str(target.parent) else Path(".")
    if target.is_dir():  # found only after the whole training otherwise
        raise ModelError(f"{target}: is a directory; give the model's file name")
    try:
        _write_atomically(target, directory, data)
    except OSError as exc:  # a read-only directory, a full disk
        raise ModelError(f"{target}: cannot write the model file "
                         f"({exc.strerror or exc})") from exc
    model.path = os.fspath(target)


def _write_atomically(target: Path, directory: Path, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    replaced = False
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _mode_of(target, 0o644))
        os.replace(tmp, target)
        replaced = True
    finally:
        if not replaced:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)

"""Training settings files (TOML): feature settings plus an optional ``[trainer]`` table.

Example (``models/default.features.toml``)::

    hash_bits = 20
    internal_hosts = ["example.net"]     # the receiving site's own relays
    redact = ["example.net"]             # strings never to learn from
    [block_weights]
    chars = 1.0
    [trainer]
    C = 1.0

Unknown keys are errors, reported with the file name.
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

from scanner.ml.errors import TrainingError
from scanner.ml.features import FeatureSettings
from scanner.ml.text import ExtractLimits
from scanner.ml.train import TrainOptions


def load_settings_file(path: str | os.PathLike[str] | None
                       ) -> tuple[FeatureSettings, TrainOptions]:
    """Feature settings and trainer options from a TOML file (defaults when ``None``)."""
    if path is None:
        return FeatureSettings(), TrainOptions()
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
    except OSError as exc:
        raise TrainingError(f"{name}: cannot read settings ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TrainingError(f"{name}: invalid TOML ({exc})") from exc
    trainer = data.pop("trainer", {})
    try:
        defaults = FeatureSettings()
        merged = defaults.to_dict()
        weights = dict(merged["block_weights"])
        weights.update(data.pop("block_weights", {}))
        limits = dict(merged["limits"])
        unknown_limits = set(data.get("limits", {})) - set(ExtractLimits.__dataclass_fields__)
        if unknown_limits:
            raise ValueError(f"unknown limits: {', '.join(sorted(unknown_limits))}")
        limits.update(data.pop("limits", {}))
        merged.update(data)
        merged["block_weights"] = weights
        merged["limits"] = limits
        settings = FeatureSettings.from_dict(merged)
        options = TrainOptions.from_dict(dict(trainer))
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"{name}: {exc}") from exc
    return settings, options

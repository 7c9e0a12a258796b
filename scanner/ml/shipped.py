"""Where the shipped default model is: the checkout's ``models/`` or the installed copy.

Run from a checkout (or an editable install) the package sits next to the repository's
``models/`` directory. A wheel installs that directory's model under
``<prefix>/share/scanner/models`` (``[tool.setuptools.data-files]`` in pyproject.toml),
``<prefix>`` being the virtual environment or Python installation the package is in.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

MODEL_NAME = "default.model"


def shipped_model_candidates() -> list[Path]:
    """The places looked at, in order: the checkout first, then the installed copy."""
    checkout = Path(__file__).resolve().parents[2] / "models" / MODEL_NAME
    installed = Path(sysconfig.get_path("data")) / "share" / "scanner" / "models" / MODEL_NAME
    return [checkout, installed]


def shipped_model_path() -> Path:
    """The shipped model's file; the checkout's path when neither exists (so that an
    error names where the model was expected first)."""
    candidates = shipped_model_candidates()
    for path in candidates:
        if path.is_file():
            return path
    return candidates[0]

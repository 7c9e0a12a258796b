"""BAYES_*: the trained spam classifier's calibrated probability as SpamAssassin bands.

The model file (``scanner/ml`` msgpack format, never pickle) is loaded at start and
reloaded on SIGHUP. ``scanner serve``'s master looks at the file every
``reload_interval`` seconds (its size, mtime and inode, :meth:`Bayes.watched`) and
treats a change as a SIGHUP (:mod:`scanner.serve.watch`): a new file written by
``scanner train``/``scanner learn`` (atomic replace) is loaded in each worker's thread
pool, validated, and swapped in between messages; no message waits for the file, and a
message keeps the model it started with. A file that fails to load is logged (once per
change) and the old model stays (also in a worker started after the file broke: it
keeps the model the master read at start-up, at the last SIGHUP or the last change);
an unusable *shipped* model only turns the check off (a model the admin configured
must load, or start-up stops).
Scoring runs in the worker's CPU pool.
Symbols: ``BAYES_00`` ... ``BAYES_99`` and ``BAYES_999`` (with BAYES_99, as SpamAssassin);
the option is the probability.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from scanner.checks.base import CheckContext, WatchedFile, file_stamp
from scanner.config.schema import opt
from scanner.errors import ConfigError
from scanner.ml.bands import BAND_NAMES, bands_for
from scanner.ml.errors import ModelError
from scanner.ml.model import Model, load_model
from scanner.ml.shipped import shipped_model_path
from scanner.task import Hit, Task

log = logging.getLogger("scanner.checks.bayes")
SHIPPED_MODEL = str(shipped_model_path())

@dataclass(frozen=True, slots=True)
class BayesSettings:
    """Settings of the classifier check ([checks.settings.bayes])."""

    model: str = opt("", "model file; empty = the shipped models/default.model")
    reload_interval: float = opt(5.0, "seconds between scanner serve's looks at the model "
                                 "file; a changed file is reloaded as on SIGHUP (in the "
                                 "workers' thread pools, never while a message waits); "
                                 "0 = only on SIGHUP", min=0.0)


class Bayes:
    """Score messages with the trained model."""

    name: ClassVar[str] = "bayes"
    description: ClassVar[str] = "Trained spam classifier (BAYES_* bands)"
    symbols: ClassVar[dict[str, str]] = {b: "model probability band" for b in BAND_NAMES}
    default_enabled: ClassVar[bool] = True
    kind: ClassVar[str] = "spam"
    Settings: ClassVar[type] = BayesSettings

    def __init__(self, settings: BayesSettings, context: CheckContext) -> None:
        self._path = os.path.abspath(settings.model or SHIPPED_MODEL)
        self._interval = settings.reload_interval
        self._run_cpu = context.run_cpu
        self._model: Model | None = None
        self._last_good = context.last_good
        self._stamp = file_stamp(self._path)  # before reading: a change meanwhile counts
        try:
            self._model = self._last_good.keep(("bayes", self._path), _load(self._path))
        except ModelError as exc:
            self._model = self._last_good.get(("bayes", self._path))
            if self._model is not None:  # damaged since start-up: keep what was read
                log.error("keeping the model read before: %s", exc)
            elif settings.model:  # a model the admin chose must work
                raise ConfigError(f"{context.config.source}: [checks.settings.bayes] model: "
                                  f"{exc}") from None
            else:
                log.warning("shipped model unusable (%s): the classifier adds no symbols "
                            "until a model is trained (scanner train) or configured", exc)

    async def probe(self) -> str | None:
        """At start-up: None when a model is loaded, else what that means for mail."""
        if self._model is not None:
            return None
        return (f"no usable model at {self._path}: BAYES_* symbols are not added, so spam "
                "is scored by the other checks alone (scanner train, or set "
                "[checks.settings.bayes] model)")

    @property
    def model(self) -> Model | None:
        """The model in use (None when none could be loaded)."""
        return self._model

    def watched(self) -> list[WatchedFile]:
        """The model file, for the master's file watch (none with reload_interval 0)."""
        return [WatchedFile(self._path, self._interval, self._stamp)] if self._interval else []

    def reload(self) -> bool:
        """Load the model file again; keep the old model if the new one is bad (SIGHUP,
        and the master's file watch; runs in the thread pool)."""
        stamp = file_stamp(self._path)
        try:
            model = _load(self._path)
        except ModelError as exc:
            log.error("keeping the current model: %s", exc)
            self._stamp = stamp
            return False
        self._model, self._stamp = model, stamp
        self._last_good.keep(("bayes", self._path), model)
        log.info("model reloaded from %s", self._path)
        return True

    async def run(self, task: Task) -> Iterable[Hit]:
        model = self._model  # a reload swaps the reference; this message keeps its model
        if model is None:
            return []
        client = task.client
        p: Any = await self._run_cpu(model.score_message, task.raw, client.name, client.addr,
                                     task.envelope.sender or None)
        return [Hit(band, options=(f"{p:.4f}",)) for band in bands_for(p)]


def _load(path: str) -> Model:
    """:func:`load_model`, with any other error a damaged file causes (a field of the
    wrong type that validation let through) as the :class:`ModelError` naming the file:
    the old model stays, start-up says which file, and no message fails on it."""
    try:
        return load_model(path)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{path}: unusable model file ({type(exc).__name__}: {exc}); "
                         "train it again (scanner train)") from exc

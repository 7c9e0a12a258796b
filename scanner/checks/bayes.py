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
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from scanner.checks.base import CheckContext, WatchedFile, file_stamp
from scanner.config.schema import opt
from scanner.errors import ConfigError
from scanner.ml.autolearn import Thresholds
from scanner.ml.autolearn_spool import apply_spool, fingerprint, write_record
from scanner.ml.bands import BAND_NAMES, bands_for
from scanner.ml.errors import ModelError
from scanner.ml.model import Model, load_model, message_digest
from scanner.ml.shipped import shipped_model_path
from scanner.task import Hit, Task

log = logging.getLogger("scanner.checks.bayes")
SHIPPED_MODEL = str(shipped_model_path())
MAX_QUEUED = 20000
"""Autolearn files waiting in the spool beyond which no more are queued."""
SPOOL_LOOK_INTERVAL = 10.0

@dataclass(frozen=True, slots=True)
class BayesSettings:
    """Settings of the classifier check ([checks.settings.bayes])."""

    model: str = opt("", "model file; empty = the shipped models/default.model")
    reload_interval: float = opt(5.0, "seconds between scanner serve's looks at the model "
                                 "file; a changed file is reloaded as on SIGHUP (in the "
                                 "workers' thread pools, never while a message waits); "
                                 "0 = only on SIGHUP", min=0.0)
    autolearn: bool = opt(False, "learn mail the other checks are sure of into `model` "
                          "(SpamAssassin's bayes_auto_learn; spam only unless "
                          "autolearn_ham); needs a site model, never the shipped file")
    autolearn_spam_above: float = opt(8.0, "learn as spam from this many points of the "
                                      "other checks (BAYES_* left out)")
    autolearn_min_header_points: float = opt(0.0, "of those, at least this many from "
                                             "header tests (header rules, DNS lists, "
                                             "SPF/DKIM/DMARC; SpamAssassin: 3)")
    autolearn_min_body_points: float = opt(0.0, "and at least this many from body tests "
                                           "(body, uri, rawbody, full rules, URI lists; "
                                           "SpamAssassin: 3)")
    autolearn_ham: bool = opt(False, "also learn ham below autolearn_ham_below (off: on "
                              "later mail it taught the model spam nothing else caught)")
    autolearn_ham_below: float = opt(0.1, "learn as ham under this many points of the "
                                     "other checks (with autolearn_ham)")
    autolearn_interval: float = opt(60.0, "seconds between learning what was queued into "
                                    "the model file", min=1.0)
    autolearn_spool: str = opt("", "directory of the queued messages' features; empty = "
                               "the model's path plus .autolearn")


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
        self.autolearn: Thresholds | None = None
        self._spool = ""
        self._spool_looked = -SPOOL_LOOK_INTERVAL
        self._spool_was_full = False
        if settings.autolearn:
            self.autolearn = _thresholds(settings)
            self._spool = _spool_dir(settings, context.config.source)
        self._interval = settings.reload_interval
        self._settings_interval = settings.autolearn_interval
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
        args = (task.raw, client.name, client.addr, task.envelope.sender or None)
        if self.autolearn is None:
            p: Any = await self._run_cpu(model.score_message, *args)
        else:  # keep what was scored: the features are queued if the message is learnt
            p, features = await self._run_cpu(_score_keeping_features, model, *args)
            task.scratch[self.name] = (model, features)
        return [Hit(band, options=(f"{p:.4f}",)) for band in bands_for(p)]

    # -- autolearn (scanner.ml.autolearn, scanner.ml.autolearn_spool) -------------------
    def queue_for_learning(self, task: Task) -> bool:
        """Queue the features this message was scored with under its autolearn label
        (``task.autolearn``); False when learning it would change nothing (the model
        already puts it beyond the margin a PA-I step aims at) or none were kept."""
        kept = task.scratch.get(self.name)
        if kept is None or task.autolearn not in ("spam", "ham"):
            return False
        model, features = kept
        spam = task.autolearn == "spam"
        if (1.0 if spam else -1.0) * model.decision(features) >= 1.0 or self._spool_full():
            return False
        write_record(self._spool, message_digest(task.raw), spam, features,
                     fingerprint(model.settings))
        return True

    def _spool_full(self) -> bool:
        """Whether the spool holds :data:`MAX_QUEUED` files (looked at every
        :data:`SPOOL_LOOK_INTERVAL` seconds at most): a model that cannot be written
        keeps its queue, and the queue must not fill the disk meanwhile."""
        now = time.monotonic()
        if now - self._spool_looked >= SPOOL_LOOK_INTERVAL:
            self._spool_looked = now
            try:
                with os.scandir(self._spool) as entries:
                    count = sum(1 for _ in entries)
            except FileNotFoundError:
                count = 0
            full = count >= MAX_QUEUED
            if full and not self._spool_was_full:
                log.error("autolearn: %d files wait in %s; no more are queued until they "
                          "are learnt (is the model file writable?)", count, self._spool)
            self._spool_was_full = full
        return self._spool_was_full

    @property
    def housekeeping_interval(self) -> float:
        """Seconds between :meth:`housekeeping` runs (0: none)."""
        return self._settings_interval if self.autolearn is not None else 0.0

    def housekeeping(self) -> None:
        """Learn the queued messages into the model file (in the worker's thread pool;
        the master's file watch then reloads the model everywhere)."""
        try:
            done = apply_spool(self._path, self._spool)
        except ModelError as exc:
            log.error("autolearn: queued messages not learnt, they wait in %s: %s",
                      self._spool, exc)
            return
        if done is not None:
            log.info("autolearn: %s into %s", done.text(), self._path)
            for damaged in done.damaged[:5]:
                log.warning("autolearn: dropped a damaged queued file: %s", damaged)


def _score_keeping_features(model: Model, raw: bytes, *client: Any) -> tuple[float, Any]:
    features = model.features(raw, *client)
    return model.score(features), features


def _thresholds(settings: BayesSettings) -> Thresholds:
    return Thresholds(spam_above=settings.autolearn_spam_above,
                      min_header_points=settings.autolearn_min_header_points,
                      min_body_points=settings.autolearn_min_body_points,
                      ham=settings.autolearn_ham, ham_below=settings.autolearn_ham_below)


def _spool_dir(settings: BayesSettings, source: str) -> str:
    """The autolearn spool directory (made, mode 0700, when the first message is
    queued); a ConfigError naming the key when autolearn cannot work there."""
    if not settings.model:
        raise ConfigError(f"{source}: [checks.settings.bayes] autolearn: needs a site model "
                          "(the shipped file is never written): set model, e.g. "
                          '"/var/lib/scanner/site.model", to a copy of the shipped model '
                          "or one from scanner train")
    spool = os.path.abspath(settings.autolearn_spool
                            or os.path.abspath(settings.model) + ".autolearn")
    place = spool
    while not os.path.isdir(place):  # the nearest directory that exists
        if os.path.lexists(place):
            raise ConfigError(f"{source}: [checks.settings.bayes] autolearn_spool: "
                              f"{place}: exists and is not a directory")
        place = os.path.dirname(place)
    if not os.access(place, os.W_OK | os.X_OK):
        raise ConfigError(f"{source}: [checks.settings.bayes] autolearn_spool: {spool}: "
                          f"{place} is not writable by this user; give a directory it "
                          "may write")
    return spool


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

"""The spam (UBE) classifier: features, the msgpack model format, training and scoring.

Scoring needs only numpy and the model file::

    from scanner.ml import load_model, bands_for
    model = load_model("models/default.model")          # ModelError if bad
    p = model.score_message(raw, client_name, client_addr, sender)
    symbols = bands_for(p)                                # e.g. ("BAYES_99", "BAYES_999")

Training (``scanner.ml.train``, ``scanner.ml.evaluate``) imports scikit-learn lazily.
Modules: ``text`` (message -> text), ``features``/``tokens``/``hashing``/``received``
(text -> sparse vector), ``model``/``modelformat``/``calibration`` (the model and its
file), ``bands`` (BAYES_* symbols), ``mailbox_reader``/``corpus`` (training mail),
``train``/``evaluate``/``learn`` (the jobs behind ``scanner train|eval|learn``).
"""

from scanner.ml.bands import band_for, bands_for
from scanner.ml.errors import ModelError, TrainingError
from scanner.ml.model import Model, load_model, save_model
from scanner.ml.text import message_text

__all__ = [
    "Model",
    "ModelError",
    "TrainingError",
    "band_for",
    "bands_for",
    "load_model",
    "message_text",
    "save_model",
]

"""Loads decoders registered under the ``scanner.decoders`` entry-point group.

Built-in decoders are registered the same way as third-party ones (see pyproject.toml).
An entry point may name a class (instantiated without arguments) or a ready instance.
Order: a decoder's optional ``order`` attribute (default 100), then its name; the
unpacker uses the first decoder whose ``handles`` contains a part's detected type and
whose optional ``wants`` accepts the part.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import entry_points

from decoders.base import Decoder

GROUP = "scanner.decoders"
log = logging.getLogger(__name__)

LIBRARY_LOGGERS = ("libarchive", "tnefparse", "olevba", "olefile", "oletools", "crypto",
                   "msoffcrypto", "py7zr")
"""Loggers of the libraries the decoders use. They log problems of one file in their own
words, without the message's mail_id, as often as hostile mail likes (200 damaged
winmail.dat files made tnefparse log 2,330 warnings and 12 errors; libarchive warns about
every odd archive); the ``DECODE_*`` symbols already say what came of it."""


def quiet_libraries(level: int) -> None:
    """Silence :data:`LIBRARY_LOGGERS` unless ``level`` is DEBUG or lower."""
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(
            logging.NOTSET if level <= logging.DEBUG else logging.CRITICAL)


def load_decoders(group: str = GROUP) -> list[Decoder]:
    """Instantiate every registered decoder; one that fails to load is logged and skipped."""
    found: dict[str, Decoder] = {}
    for ep in entry_points(group=group):
        try:
            obj = ep.load()
            decoder = obj() if isinstance(obj, type) else obj
        except Exception:
            log.exception("decoder entry point %s failed to load", ep.name)
            continue
        if not isinstance(decoder, Decoder):
            log.error("entry point %s is not a Decoder", ep.name)
            continue
        if decoder.name in found:
            raise ValueError(f"duplicate decoder name {decoder.name!r} ({ep.value})")
        found[decoder.name] = decoder
    return sort_decoders(list(found.values()))


def sort_decoders(decoders: Sequence[Decoder]) -> list[Decoder]:
    return sorted(decoders, key=lambda d: (getattr(d, "order", 100), d.name))


def dispatch(decoders: Sequence[Decoder], short_type: str | None) -> Decoder | None:
    """The first decoder handling ``short_type``."""
    if not short_type:
        return None
    for decoder in decoders:
        if short_type in decoder.handles:
            return decoder
    return None


def candidates(decoders: Sequence[Decoder], short_type: str | None) -> list[Decoder]:
    """Every decoder handling ``short_type``, in order; the unpacker takes the first
    whose ``wants`` accepts the part (text can hold uuencode or yEnc)."""
    if not short_type:
        return []
    return [d for d in decoders if short_type in d.handles]

"""Loads decoders registered under the ``scanner.decoders`` entry-point group.

Built-in decoders are registered the same way as third-party ones (see pyproject.toml).
An entry point may name a class (instantiated without arguments) or a ready instance.
Order: a decoder's optional ``order`` attribute (default 100), then its name; the
unpacker uses the first decoder whose ``handles`` contains a part's detected type.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import entry_points

from decoders.base import Decoder

GROUP = "scanner.decoders"
log = logging.getLogger(__name__)


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

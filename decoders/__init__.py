"""Pluggable MIME and archive unpacking with decompression-bomb limits and file typing.

Entry points: :func:`decoders.unpack.unpack` (bytes -> :class:`Unpacked` part tree),
:mod:`decoders.filetype` (libmagic -> short types), :mod:`decoders.render` (tree text and
JSON). Decoders are plug-ins registered under the ``scanner.decoders`` entry-point group;
see ``decoders/FORMATS.md`` for the formats each one reads.
"""

from decoders.base import Child, Decoder, Limits
from decoders.part import Part
from decoders.unpack import Unpacked, unpack

__all__ = ["Child", "Decoder", "Limits", "Part", "Unpacked", "unpack"]

"""PKZIP "implode" (zip method 6): sliding dictionary plus Shannon-Fano coded lengths.

Neither :mod:`zipfile` nor libarchive reads this old method, so this is our own small
decoder (written from the format description: flag bit 1 selects an 8 KiB dictionary,
flag bit 2 a literal tree; trees are stored as run-length coded bit lengths). Output is
produced in chunks through a callback so the caller's quota applies while decoding.
"""

from __future__ import annotations

from collections.abc import Callable

from decoders.base import CorruptPart

Node = int | tuple["Node", "Node"]
FLUSH = 64 * 1024


class _Bits:
    """Least-significant-bit-first reader of at most 16 bits at a time."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data) * 8

    def read(self, n: int) -> int:
        if self.pos + n > self.end:
            raise CorruptPart("implode: data truncated")
        start = self.pos >> 3
        word = int.from_bytes(self.data[start : start + 3], "little")
        value = (word >> (self.pos & 7)) & ((1 << n) - 1)
        self.pos += n
        return value


def _lengths(bits: _Bits, size: int) -> list[int]:
    out: list[int] = []
    for _ in range(bits.read(8) + 1):
        length = bits.read(4) + 1
        count = bits.read(4) + 1
        out += [length] * count
    if len(out) != size:
        raise CorruptPart(f"implode: tree has {len(out)} codes, expected {size}")
    return out


def _tree(lengths: list[int]) -> Node:
    """The Shannon-Fano tree: levels built from the longest codes up, pairing nodes."""
    order = sorted(range(len(lengths)), key=lambda v: (lengths[v], v))
    i = len(order) - 1
    carried: list[Node] = []
    for level in range(max(lengths), 0, -1):
        nodes = carried
        while i >= 0 and lengths[order[i]] == level:
            nodes.append(order[i])
            i -= 1
        if level == 1:
            if len(nodes) < 2:
                raise CorruptPart("implode: degenerate tree")
            return (nodes[-2], nodes[-1])
        carried = [(nodes[j], nodes[j + 1]) for j in range(0, len(nodes) - 1, 2)]
    raise CorruptPart("implode: empty tree")


def _symbol(bits: _Bits, node: Node) -> int:
    while isinstance(node, tuple):
        node = node[bits.read(1)]
    return node


def explode(data: bytes, flags: int, size: int, emit: Callable[[bytes], object]) -> None:
    """Decode ``size`` bytes of imploded ``data``; ``emit`` receives the output in chunks."""
    bits = _Bits(data)
    big_window = bool(flags & 0x02)
    literal_tree = _tree(_lengths(bits, 256)) if flags & 0x04 else None
    length_tree = _tree(_lengths(bits, 64))
    distance_tree = _tree(_lengths(bits, 64))
    dict_bits = 7 if big_window else 6
    min_match = 3 if literal_tree is not None else 2
    out = bytearray()
    flushed = 0
    while flushed + len(out) < size:
        if bits.read(1):
            out.append(_symbol(bits, literal_tree) if literal_tree is not None else bits.read(8))
        else:
            low = bits.read(dict_bits)
            distance = ((_symbol(bits, distance_tree) << dict_bits) | low) + 1
            length = _symbol(bits, length_tree)
            if length == 63:
                length += bits.read(8)
            length += min_match
            for _ in range(length):
                back = len(out) - distance
                out.append(out[back] if back >= 0 else 0)
        if len(out) >= 2 * FLUSH:  # keep one window of history, hand the rest out
            emit(bytes(out[:-FLUSH]))
            flushed += len(out) - FLUSH
            del out[:-FLUSH]
    emit(bytes(out[: size - flushed]))

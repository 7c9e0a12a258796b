"""The LZ77 + static Huffman coding of ARJ methods 1-3 (the LHA "-lh6-" family).

Bits are read most-significant first. Each block starts with a 16-bit symbol count and
three code-length tables (a pre-code, the literal/length code, the position code), all
canonical Huffman codes. Written for this project from the format's description.
"""

from __future__ import annotations

from collections.abc import Callable

from decoders.base import CorruptPart

THRESHOLD = 3
NC = 255 + 256 + 2 - THRESHOLD  # literals 0..255, then match lengths 3..256
NT = 16 + 3
NP = 16 + 1
CBIT, TBIT, PBIT = 9, 5, 5
FLUSH = 64 * 1024


class MsbBits:
    """Most-significant-bit-first reader; a short overrun past the end reads zeros."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data) * 8

    def peek(self, n: int) -> int:
        if n > 25:  # no code of the format is that long (16 bits at most): damaged tables
            raise CorruptPart(f"lzh: a {n}-bit code")
        start = self.pos >> 3
        word = int.from_bytes(self.data[start : start + 4].ljust(4, b"\0"), "big")
        return (word >> (32 - (self.pos & 7) - n)) & ((1 << n) - 1)

    def skip(self, n: int) -> None:
        self.pos += n
        if self.pos > self.end + 32:
            raise CorruptPart("lzh: data truncated")

    def read(self, n: int) -> int:
        value = self.peek(n) if n else 0
        self.skip(n)
        return value


class Code:
    """A canonical Huffman code from lengths (or a constant symbol taking no bits)."""

    def __init__(self, lengths: list[int] | None = None, constant: int | None = None) -> None:
        self.constant = constant
        self.table: dict[tuple[int, int], int] = {}
        self.max = 0
        if lengths is None:
            return
        code = 0
        for length in range(1, 17):
            for symbol, sym_len in enumerate(lengths):
                if sym_len == length:
                    self.table[(length, code)] = symbol
                    code += 1
            code <<= 1
        self.max = max(lengths, default=0)
        if not self.table:
            raise CorruptPart("lzh: empty code")

    def decode(self, bits: MsbBits) -> int:
        if self.constant is not None:
            return self.constant
        for length in range(1, self.max + 1):
            symbol = self.table.get((length, bits.peek(length)))
            if symbol is not None:
                bits.skip(length)
                return symbol
        raise CorruptPart("lzh: invalid code")


def _pt_code(bits: MsbBits, count: int, nbit: int, special: int) -> Code:
    n = bits.read(nbit)
    if n == 0:
        return Code(constant=bits.read(nbit))
    if n > count:
        raise CorruptPart("lzh: bad table size")
    lengths: list[int] = []
    while len(lengths) < n:
        c = bits.peek(3)
        if c == 7:
            window = bits.peek(16)
            mask = 1 << 12
            while mask and window & mask:
                mask >>= 1
                c += 1
        bits.skip(3 if c < 7 else c - 3)
        lengths.append(c)
        if len(lengths) == special:
            lengths += [0] * bits.read(2)
    return Code(lengths[:count] + [0] * (count - len(lengths)))


def _c_code(bits: MsbBits, pre: Code) -> Code:
    n = bits.read(CBIT)
    if n == 0:
        return Code(constant=bits.read(CBIT))
    if n > NC:
        raise CorruptPart("lzh: bad literal table size")
    lengths: list[int] = []
    while len(lengths) < n:
        c = pre.decode(bits)
        if c == 0:
            lengths.append(0)
        elif c == 1:
            lengths += [0] * (bits.read(4) + 3)
        elif c == 2:
            lengths += [0] * (bits.read(CBIT) + 20)
        else:
            lengths.append(c - 2)
    return Code(lengths[:NC] + [0] * (NC - len(lengths)))


def decode(data: bytes, size: int, emit: Callable[[bytes], object]) -> None:
    """Decode ``size`` bytes of ARJ method 1-3 data; ``emit`` gets the output in chunks."""
    bits = MsbBits(data)
    out = bytearray()
    flushed = 0
    left_in_block = 0
    literal = position = Code(constant=0)
    while flushed + len(out) < size:
        if left_in_block == 0:
            left_in_block = bits.read(16)
            if left_in_block == 0:
                raise CorruptPart("lzh: empty block")
            pre = _pt_code(bits, NT, TBIT, 3)
            literal = _c_code(bits, pre)
            position = _pt_code(bits, NP, PBIT, -1)
        left_in_block -= 1
        c = literal.decode(bits)
        if c < 256:
            out.append(c)
        else:
            length = c - 256 + THRESHOLD
            p = position.decode(bits)
            distance = (1 << (p - 1)) + bits.read(p - 1) if p > 1 else p
            for _ in range(length):
                back = len(out) - distance - 1
                out.append(out[back] if back >= 0 else 0)
        if len(out) >= 2 * FLUSH:
            emit(bytes(out[:-FLUSH]))
            flushed += len(out) - FLUSH
            del out[:-FLUSH]
    emit(bytes(out[: size - flushed]))


def _unary_width(bits: MsbBits, start: int, stop: int) -> int:
    """ARJ method 4 number: up to ``stop - start`` one-bits pick the width and offset."""
    plus = 0
    power = 1 << start
    width = start
    while width < stop:
        if not bits.read(1):
            break
        plus += power
        power <<= 1
        width += 1
    return plus + (bits.read(width) if width else 0)


def decode_fastest(data: bytes, size: int, emit: Callable[[bytes], object]) -> None:
    """Decode ARJ method 4 ("fastest"): unary-prefixed lengths and positions, no Huffman."""
    bits = MsbBits(data)
    out = bytearray()
    flushed = 0
    while flushed + len(out) < size:
        c = _unary_width(bits, 0, 7)
        if c == 0:
            out.append(bits.read(8))
        else:
            length = c - 1 + THRESHOLD
            distance = _unary_width(bits, 9, 13)
            for _ in range(length):
                back = len(out) - distance - 1
                out.append(out[back] if back >= 0 else 0)
        if len(out) >= 2 * FLUSH:
            emit(bytes(out[:-FLUSH]))
            flushed += len(out) - FLUSH
            del out[:-FLUSH]
    emit(bytes(out[: size - flushed]))

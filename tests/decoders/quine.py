"""A self-containing zip (a zip "quine"), built at test time.

The only member, stored with deflate, decompresses to the whole zip file itself. The
deflate stream is a small program of two instructions, each a 10-byte "token":

* ``lit(k)``: an empty stored block plus a stored block of ``k`` tokens (emits them),
* ``rep(d, n)``: a fixed-Huffman block copying ``n`` tokens from ``d`` tokens back,
  made exactly 80 bits long by splitting the copy into pieces and adding empty
  fixed-Huffman blocks (10 bits each).

With the local header ``P`` (p tokens) and the central directory plus end record ``S``
(s tokens, s odd) the program is::

    lit(p+1) [P, lit(p+1)]  rep(p+1)       # emits P, then doubles "P lit" -> lag 1
    lit(1) [rep(p+1)]  lit(1) [lit(1)]     # catch up on the pending tokens
    lit(4) [rep(p+1), lit(1), lit(1), lit(4)]  rep(4)
    lit(s+1) [rep(4), lit(s+1)] * (s+1)/2  rep(4)   # output now leads by "lit(s+1)"
    lit(s+1) [F, S]  F                     # F = final rep(s+1) copies "F S"

The CRC-32 of the file appears inside the file; CRC is affine over GF(2), so the value
that equals the CRC of the file containing it is found by solving 32 linear equations.
(The construction is this project's own working of the idea from Russ Cox's
"Zip Files All the Way Down".)
"""

from __future__ import annotations

import struct
import zlib
from functools import cache

TOKEN = 10
NAME = b"quine1.zip"
COMMENT = b"self-copying"
LEN_BASE = [
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    15,
    17,
    19,
    23,
    27,
    31,
    35,
    43,
    51,
    59,
    67,
    83,
    99,
    115,
    131,
    163,
    195,
    227,
    258,
]
LEN_EXTRA = [0] * 8 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [0]
DIST_BASE = [
    1,
    2,
    3,
    4,
    5,
    7,
    9,
    13,
    17,
    25,
    33,
    49,
    65,
    97,
    129,
    193,
    257,
    385,
    513,
    769,
    1025,
    1537,
    2049,
    3073,
    4097,
    6145,
    8193,
    12289,
    16385,
    24577,
]
DIST_EXTRA = [
    0,
    0,
    0,
    0,
    1,
    1,
    2,
    2,
    3,
    3,
    4,
    4,
    5,
    5,
    6,
    6,
    7,
    7,
    8,
    8,
    9,
    9,
    10,
    10,
    11,
    11,
    12,
    12,
    13,
    13,
]


class Bits:
    """LSB-first bit writer (deflate order); Huffman codes are written MSB first."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def value(self, v: int, n: int) -> None:
        self.bits += [(v >> i) & 1 for i in range(n)]

    def code(self, v: int, n: int) -> None:
        self.bits += [(v >> i) & 1 for i in reversed(range(n))]

    def tobytes(self, size: int) -> bytes:
        assert len(self.bits) <= size * 8, (len(self.bits), size)
        bits = self.bits + [0] * (size * 8 - len(self.bits))
        return bytes(sum(bits[i + j] << j for j in range(8)) for i in range(0, len(bits), 8))


def _slot(base: list[int], value: int) -> int:
    return max(i for i, b in enumerate(base) if b <= value)


def _length_bits(n: int) -> int:
    code = 257 + _slot(LEN_BASE, n)
    return (7 if code < 280 else 8) + LEN_EXTRA[code - 257]


def _dist_bits(d: int) -> int:
    return 5 + DIST_EXTRA[_slot(DIST_BASE, d)]


@cache
def _split(total: int, budget: int, dist_bits: int) -> tuple[int, ...] | None:
    """Copy lengths summing to ``total`` whose codes take exactly ``budget`` bits."""
    if total == 0:
        return () if budget == 0 else None
    for n in range(min(258, total), 2, -1):
        if 0 < total - n < 3:
            continue
        cost = _length_bits(n) + dist_bits
        if cost <= budget:
            rest = _split(total - n, budget - cost, dist_bits)
            if rest is not None:
                return (n, *rest)
    return None


def lit(k: int) -> bytes:
    n = k * TOKEN
    return b"\x00\x00\x00\xff\xff" + b"\x00" + struct.pack("<HH", n, n ^ 0xFFFF)


def rep(d: int, n: int, final: bool = False) -> bytes:
    dist, length = d * TOKEN, n * TOKEN
    pieces: tuple[int, ...] | None = (length,)
    padding = 0
    if not final:
        # 3 header + copies + 7 end-of-block bits, then empty fixed blocks of 10 bits each
        for padding in range(8):
            pieces = _split(length, 70 - 10 * padding, _dist_bits(dist))
            if pieces is not None:
                break
    if pieces is None:
        raise ValueError(f"no 80-bit encoding for a copy of {length} at {dist}")
    bits = Bits()
    bits.value(1 if final else 0, 1)
    bits.value(1, 2)  # fixed Huffman codes
    for piece in pieces:
        slot = _slot(LEN_BASE, piece)
        code = 257 + slot
        if code < 280:
            bits.code(code - 256, 7)
        else:
            bits.code(code - 280 + 0xC0, 8)
        bits.value(piece - LEN_BASE[slot], LEN_EXTRA[slot])
        dslot = _slot(DIST_BASE, dist)
        bits.code(dslot, 5)
        bits.value(dist - DIST_BASE[dslot], DIST_EXTRA[dslot])
    bits.code(0, 7)  # end of block
    for _ in range(padding):
        bits.value(0, 1)
        bits.value(1, 2)
        bits.code(0, 7)  # an empty fixed-Huffman block
    return bits.tobytes(TOKEN)


def _layout(crc: int) -> bytes:
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, 0, 0, len(NAME), 0)
    p = (len(local) + len(NAME)) // TOKEN
    cd_size = 46 + len(NAME)
    s = (cd_size + 22 + len(COMMENT)) // TOKEN
    assert (len(local) + len(NAME)) % TOKEN == 0 and (cd_size + 22 + len(COMMENT)) % TOKEN == 0
    assert s % 2 == 1
    tokens = 1 + (p + 1) + 1 + 2 + 2 + 5 + 1 + (1 + s + 1) + 1 + (1 + s + 1) + 1
    csize = tokens * TOKEN
    usize = p * TOKEN + csize + s * TOKEN
    local = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, csize, usize, len(NAME), 0
    )
    prefix = local + NAME
    central = (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            20,
            20,
            0,
            8,
            0,
            0x21,
            crc,
            csize,
            usize,
            len(NAME),
            0,
            0,
            0,
            0,
            0,
            0,
        )
        + NAME
    )
    end = (
        struct.pack(
            "<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(prefix) + csize, len(COMMENT)
        )
        + COMMENT
    )
    suffix = central + end
    final = rep(s + 1, s + 1, final=True)
    program = b"".join(
        [
            lit(p + 1),
            prefix,
            lit(p + 1),
            rep(p + 1, p + 1),
            lit(1),
            rep(p + 1, p + 1),
            lit(1),
            lit(1),
            lit(4),
            rep(p + 1, p + 1),
            lit(1),
            lit(1),
            lit(4),
            rep(4, 4),
            lit(s + 1),
            (rep(4, 4) + lit(s + 1)) * ((s + 1) // 2),
            rep(4, 4),
            lit(s + 1),
            final,
            suffix,
            final,
        ]
    )
    assert len(program) == csize
    return prefix + program + suffix


def _solve_crc() -> int:
    """The CRC value X with crc32(layout(X)) == X (affine system over GF(2))."""
    base = zlib.crc32(_layout(0))
    columns = [zlib.crc32(_layout(1 << i)) ^ base for i in range(32)]
    # Solve (A + I) x = base, where column i of A is columns[i].
    rows = []
    for r in range(32):
        mask = 0
        for c in range(32):
            bit = (columns[c] >> r) & 1 ^ (1 if r == c else 0)
            mask |= bit << c
        rows.append([mask, (base >> r) & 1])
    for col in range(32):
        pivot = next((r for r in range(col, 32) if rows[r][0] >> col & 1), None)
        if pivot is None:
            raise ValueError("singular CRC system")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(32):
            if r != col and rows[r][0] >> col & 1:
                rows[r][0] ^= rows[col][0]
                rows[r][1] ^= rows[col][1]
    return sum(rows[c][1] << c for c in range(32))


@cache
def quine_zip() -> bytes:
    data = _layout(_solve_crc())
    assert zlib.crc32(data) == struct.unpack_from("<I", data, 14)[0]
    return data

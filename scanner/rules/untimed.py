"""How long a text a rule's regex may search without the ``regex`` module's timeout.

The rules engine gives every regex call the time left of the message's budget as its
``timeout``, so that a pattern that backtracks catastrophically is stopped. That
protection costs two ``clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`` system calls per call
(the module reads the process CPU clock when the call starts and at its first check),
about 1.8 us, which is several times the cost of the search itself on a header or a
short paragraph. This module proves, once per pattern when the rules are compiled, an
upper bound on the backtracking steps of a search over ``n`` octets, and from it the
longest text on which the worst case stays within :data:`STEP_LIMIT` steps (a few
milliseconds). Calls on longer texts, and every call of a pattern this module cannot
bound, keep the timeout: a runaway search is stopped exactly as before, and an untimed
one cannot run away.

The bound (:func:`steps`) over-approximates a backtracking matcher: ``n + 1`` start
positions; at each, at most ``ways * (n + 1) ** degree`` ways through the pattern, each
through ``items`` single steps and ``repeats`` runs of up to ``n + 1`` octets, where
every octet a run gives back may cost the rest of the pattern (``items``) again.
Alternatives add their ways, a sequence multiplies them, a bounded repeat ``{lo,hi}``
of ``w`` ways has ``w**lo + ... + w**hi``. A repeat of one character class that cannot
overlap the first octet of what follows it gives back octets only to fail at once (one
way, not one per octet); an unbounded repeat of one class that can overlap adds one
degree; any other unbounded repeat (of a group), a back reference, and whatever the
parser does not know leave the pattern unbounded (always timed). Patterns are parsed
with Python's own regular-expression parser; a pattern it rejects (``regex``-only
syntax, variable-width look-behind) is always timed.
"""

from __future__ import annotations

from collections.abc import Callable
from re import _constants as C  # noqa: N812 - the parser's opcodes
from re import _parser
from typing import NamedTuple, TypeVar

_T = TypeVar("_T")

STEP_LIMIT = 1_000_000  # worst-case steps of an untimed call (see untimed_max)
# and never a text longer than this: a step costs up to ~15 ns, a linear pattern's one
# step per octet would otherwise allow ~15 ms on a 1 MB text
MAX_UNTIMED = 16 * 1024
MAX_COEF = 10**12  # more ways than this: not worth bounding
# a longer pattern is always timed, not parsed: of Debian's rules, the 60 above this
# took 1.0 s of loading to analyse and 57 of them came out unbounded (the rest: < 20
# octets)
MAX_PATTERN = 4096
NEVER = -1  # untimed_max of a pattern that is always timed

_ALL = frozenset(range(256))
_DIGIT = frozenset(range(0x30, 0x3A))
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_SPACE_MIN = frozenset(b" \t\n\r\f\v")  # what \s matches at least ...
_SPACE_MAX = _SPACE_MIN | frozenset(range(0x1C, 0x20)) | {0x85, 0xA0}  # ... and at most
# a category's octets, over-approximated (a negated one is the complement of the least)
_CATEGORY = {
    C.CATEGORY_DIGIT: _DIGIT, C.CATEGORY_NOT_DIGIT: _ALL - _DIGIT,
    C.CATEGORY_SPACE: _SPACE_MAX, C.CATEGORY_NOT_SPACE: _ALL - _SPACE_MIN,
    C.CATEGORY_WORD: _WORD, C.CATEGORY_NOT_WORD: _ALL - _WORD,
}
# the octets a category certainly matches (what a negated class may exclude)
_LEAST = {**_CATEGORY, C.CATEGORY_SPACE: _SPACE_MIN, C.CATEGORY_NOT_SPACE: _ALL - _SPACE_MAX}
_REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT)
_ZERO_WIDTH = (C.AT, C.ASSERT, C.ASSERT_NOT)


class _Unbounded(Exception):
    """The pattern has no bound this module can prove."""


def untimed_max(pattern: bytes, flags: str) -> int:
    """The longest text (octets) ``pattern`` (``regex`` syntax, Perl modifiers ``flags``)
    may search without a timeout; :data:`NEVER` when every call needs one. Measured on
    the worst texts found for Debian's SpamAssassin rules and the shipped set: at most
    about 2.5 ms per call on this VM (``[a-z]+\\d`` on 576 letters: 1.5 ms)."""
    if len(pattern) > MAX_PATTERN:
        return NEVER
    re_flags = (C.SRE_FLAG_IGNORECASE if "i" in flags else 0) | \
        (C.SRE_FLAG_DOTALL if "s" in flags else 0) | \
        (C.SRE_FLAG_MULTILINE if "m" in flags else 0)
    try:
        tree = _parser.parse(pattern, re_flags)
        bound = _Bound(tree.state.flags).seq(list(tree), frozenset())
    except (_Unbounded, _parser.error, RecursionError, OverflowError, ValueError):
        return NEVER
    except (AttributeError, TypeError, IndexError, KeyError):  # the private parser's
        return NEVER  # tree changed shape (another Python version): keep the timeout
    return min(longest_within(bound), MAX_UNTIMED)


def steps(bound: Ways, n: int) -> int:
    """Upper bound on the backtracking steps of a search over ``n`` octets."""
    per_way = bound.items + bound.repeats * (n + 1) * (bound.items + 1)
    return (n + 1) ** (bound.degree + 1) * bound.ways * per_way


def longest_within(bound: Ways, limit: int = STEP_LIMIT) -> int:
    """The largest ``n`` with ``steps(bound, n) <= limit`` (NEVER if not even 0)."""
    if steps(bound, 0) > limit:
        return NEVER
    lo, hi = 0, 1
    while steps(bound, hi) <= limit:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # steps grows with n: bisect
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if steps(bound, mid) <= limit else (lo, mid)
    return lo


class Ways(NamedTuple):
    """A bound on a (part of a) pattern: at most ``ways * (n + 1) ** degree`` ways to
    match it, each through at most ``items`` single steps and ``repeats`` runs of
    up to ``n + 1`` octets."""

    ways: int
    degree: int
    items: int
    repeats: int


_ONE = Ways(1, 0, 1, 0)


def _then(a: Ways, b: Ways) -> Ways:
    """``a`` followed by ``b``."""
    ways = a.ways * b.ways
    if ways > MAX_COEF:
        raise _Unbounded
    return Ways(ways, a.degree + b.degree, a.items + b.items, a.repeats + b.repeats)


def _repeated(ways: int, lo: int, hi: int) -> int:
    """``ways**lo + ... + ways**hi`` (the ways of a repeat ``{lo,hi}``), without working
    out powers far past :data:`MAX_COEF` (``{1,65535}`` of two ways took seconds)."""
    if ways == 1:
        return hi - lo + 1
    total, term = 0, ways ** min(lo, 64)
    if term > MAX_COEF:
        raise _Unbounded
    for _ in range(lo, hi + 1):
        total += term
        if total > MAX_COEF:
            raise _Unbounded
        term *= ways
    return total


class _Bound:
    """Walks a parsed pattern, returning a :class:`Ways` for each part."""

    def __init__(self, flags: int) -> None:
        self.flags = flags

    def seq(self, items: list, follow: frozenset[int]) -> Ways:
        """A sequence; ``follow``: the octets that may start what comes after it
        (empty at the end of the pattern or of a look-around)."""
        out = Ways(1, 0, 0, 0)
        for i, (op, av) in enumerate(items):
            out = _then(out, self.node(op, av, self.first(items, follow, i + 1)))
        return out

    def node(self, op: object, av: object, follow: frozenset[int]) -> Ways:
        if op in _REPEATS:
            return self.repeat(av, follow)  # type: ignore[arg-type]
        if op is C.SUBPATTERN:
            _group, add, remove, sub = av  # type: ignore[misc]
            return self.scoped(add, remove, lambda: self.seq(list(sub), follow))
        if op is C.ATOMIC_GROUP:
            return self.seq(list(av), follow)  # type: ignore[call-overload]
        if op is C.BRANCH:
            alts = [self.seq(list(b), follow) for b in av[1]]  # type: ignore[index]
            return Ways(sum(a.ways for a in alts), max(a.degree for a in alts),
                        max(a.items for a in alts), max(a.repeats for a in alts))
        if op in (C.ASSERT, C.ASSERT_NOT):
            return self.seq(list(av[1]), frozenset())  # type: ignore[index]
        if op is C.AT or self.chars(op, av) is not None:
            return _ONE
        raise _Unbounded  # back references, conditionals, anything unknown

    def repeat(self, av: tuple, follow: frozenset[int]) -> Ways:
        lo, hi, sub = av
        items = list(sub)
        single = self.chars(*items[0]) if len(items) == 1 else None
        if single is not None:
            run = Ways(1, 0, 1, 1) if hi == C.MAXREPEAT else Ways(1, 0, hi, 0)
            if not single & follow:  # gives octets back only to fail at once
                return run
            if hi == C.MAXREPEAT:  # one way per length of the run
                return run._replace(degree=1)
            return run._replace(ways=hi - lo + 1)
        if hi == C.MAXREPEAT:
            raise _Unbounded
        one = self.seq(items, self.first(items, frozenset()) | follow)
        return Ways(_repeated(one.ways, lo, hi), one.degree * hi, one.items * hi,
                    one.repeats * hi)

    def scoped(self, add: int, remove: int, walk: Callable[[], _T]) -> _T:
        """Run ``walk`` with a group's inline flags."""
        saved = self.flags
        self.flags = (saved | add) & ~remove
        try:
            return walk()
        finally:
            self.flags = saved

    def first(self, items: list, follow: frozenset[int], start: int = 0) -> frozenset[int]:
        """The octets a match of ``items[start:]`` then ``follow`` may start with (a
        superset)."""
        out, nullable = self.starts(items, start)
        return out | follow if nullable else out

    def starts(self, items: list, start: int = 0) -> tuple[frozenset[int], bool]:
        """(the octets a match of ``items[start:]`` may start with, whether it may be
        empty); no copy of the list (a 200 KB literal is a sequence of 200,000 items)."""
        out: frozenset[int] = frozenset()
        for k in range(start, len(items)):
            chars, nullable = self.item_starts(*items[k])
            out |= chars
            if not nullable:
                return out, False
        return out, True

    def item_starts(self, op: object, av: object) -> tuple[frozenset[int], bool]:
        if op in _ZERO_WIDTH:
            return frozenset(), True
        chars = self.chars(op, av)
        if chars is not None:
            return chars, False
        if op in _REPEATS:
            lo, _hi, sub = av  # type: ignore[misc]
            out, nullable = self.starts(list(sub))
            return out, nullable or lo == 0
        if op is C.SUBPATTERN:
            _group, add, remove, sub = av  # type: ignore[misc]
            return self.scoped(add, remove, lambda: self.starts(list(sub)))
        if op is C.ATOMIC_GROUP:
            return self.starts(list(av))  # type: ignore[call-overload]
        if op is C.BRANCH:
            found = [self.starts(list(b)) for b in av[1]]  # type: ignore[index]
            return frozenset().union(*(f for f, _ in found)), any(n for _, n in found)
        return _ALL, True

    def chars(self, op: object, av: object) -> frozenset[int] | None:
        """The octets one single-octet item matches (a superset), or None."""
        if op is C.LITERAL:
            out = frozenset((av,))
        elif op is C.NOT_LITERAL:
            return _ALL - self.cased(frozenset((av,)), exact=True)
        elif op is C.ANY:
            return _ALL if self.flags & C.SRE_FLAG_DOTALL else _ALL - {0x0A}
        elif op is C.IN:
            return self.charset(av)  # type: ignore[arg-type]
        elif op is C.CATEGORY:
            out = _CATEGORY.get(av, _ALL)  # type: ignore[call-overload]
        else:
            return None
        return self.cased(out)

    def charset(self, items: list) -> frozenset[int]:
        negate = bool(items) and items[0][0] is C.NEGATE
        out: set[int] = set()
        for op, av in items[negate:]:
            if op is C.LITERAL:
                out.add(av)
            elif op is C.RANGE:
                out.update(range(av[0], av[1] + 1))
            elif op is C.CATEGORY:
                if negate:  # the complement of a category needs its least octets
                    out.update(_LEAST.get(av, ()))
                else:
                    out.update(_CATEGORY.get(av, _ALL))
            elif not negate:
                return _ALL
        if negate:
            return _ALL - self.cased(frozenset(out), exact=True)
        return self.cased(frozenset(out))

    def cased(self, chars: frozenset[int], exact: bool = False) -> frozenset[int]:
        """``chars`` with the other case of ASCII letters under IGNORECASE; ``exact``:
        the octets certainly matched (a negated item excludes only these)."""
        if not self.flags & C.SRE_FLAG_IGNORECASE or exact:
            return chars
        return chars | frozenset(c ^ 0x20 for c in chars
                                 if 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A)

"""One scan per text finds the rules that may match; the exact regex confirms them.

With the ``hyperscan`` package, every pattern that Hyperscan accepts goes into one
database compiled in prefilter mode (``HS_FLAG_PREFILTER``: back references and
look-arounds are approximated by a superset), and each text kind is scanned once.
Texts are joined with newlines and scanned in multi-line mode, so a rule that
matches one paragraph (or URI) also matches the joined text; patterns whose meaning
depends on the absolute start or end of the text (``\\A``, ``\\z``, ``\\G``) are
never prefiltered.

Without Hyperscan (or for patterns it rejects), a pure-Python prefilter checks a
literal that every match must contain (see :func:`required_literal`); patterns
without one run on every message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from scanner.rules.perlre import Translated

log = logging.getLogger("scanner.rules")

try:  # optional: the pure-Python prefilter is used without it
    import hyperscan as _hs
except ImportError:  # pragma: no cover - depends on the installation
    _hs = None

_ABS_ANCHOR = re.compile(r"\\[AzZG]|\\Z")
_BIG_REPEAT = re.compile(r"(\\)?\{(\d+)(?:,(\d*))?\}")
MIN_LITERAL = 3
MAX_HS_LONG_PATTERN = 16000
MAX_HS_REPEAT = 60
CHUNK = 64


def hyperscan_available() -> bool:
    return _hs is not None


class Prefilter:
    """Candidate rules (by index) for a text, for one family of rules."""

    def __init__(self, patterns: Sequence[Translated], use_hyperscan: bool = True,
                 cache_dir: Path | None = None) -> None:
        self.size = len(patterns)
        self.always: list[int] = []
        self.literals: list[tuple[int, bytes, bool]] = []
        self._dbs: list = []
        self._local = threading.local()
        self.cache_dir = cache_dir
        entries: list[tuple[int, Translated]] = []  # (rule index, pattern for Hyperscan)
        for i, tr in enumerate(patterns):
            if use_hyperscan and _hs is not None and hs_suitable(tr):
                entries.append((i, tr))
            elif use_hyperscan and _hs is not None and (parts := split_long(tr)):
                entries.extend((i, part) for part in parts)
            else:
                self._no_hs(i, tr)
        rejected: set[int] = set()
        for n in range(0, len(entries), CHUNK):
            rejected.update(self._chunk(entries[n:n + CHUNK]))
        for i in sorted(rejected):
            self._no_hs(i, patterns[i])
        self.hs_count = len({i for i, _ in entries} - rejected)

    def _no_hs(self, i: int, tr: Translated) -> None:
        lit = required_literal(tr.python, "i" in tr.flags)
        if lit is None:
            self.always.append(i)
        else:
            self.literals.append((i, lit, "i" in tr.flags))

    def _chunk(self, items: list[tuple[int, Translated]]) -> list[int]:
        """Build (or load from the cache) one database; returns rejected rule indexes."""
        assert _hs is not None
        key = hashlib.sha256(repr((_hs.__version__, MAX_HS_REPEAT,
                                   [(tr.pcre, _flags(tr)) for _, tr in items]))
                             .encode("utf-8", "surrogateescape")).hexdigest()
        cached = self._load(key, items)
        if cached is not None:
            return cached
        bad_pos: list[int] = []
        good = list(range(len(items)))
        db = None
        while good:
            try:
                db = _compile_db([items[p] for p in good])
                break
            except _hs.error:
                found = _find_bad([items[p] for p in good])
                bad_ids = set(found)
                if not bad_ids:
                    log.warning("hyperscan: cannot build a database; literal prefilter used")
                    bad_pos.extend(good)
                    good, db = [], None
                    break
                bad_pos.extend(p for p in good if items[p][0] in bad_ids)
                good = [p for p in good if items[p][0] not in bad_ids]
        if db is not None:
            self._dbs.append(db)
        self._save(key, db, bad_pos)
        return [items[p][0] for p in bad_pos]

    def _load(self, key: str, items: list[tuple[int, Translated]]) -> list[int] | None:
        if self.cache_dir is None or _hs is None:
            return None
        path = self.cache_dir / f"hs-{key}.db"
        try:
            data = path.read_bytes()
            header, _, blob = data.partition(b"\n")
            bad_pos = json.loads(header)
            if blob:
                self._dbs.append(_hs.loadb(blob, _hs.HS_MODE_BLOCK))
        except (OSError, ValueError, _hs.error):
            return None
        return [items[p][0] for p in bad_pos]

    def _save(self, key: str, db: object, bad_pos: list[int]) -> None:
        if self.cache_dir is None or _hs is None:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            blob = _hs.dumpb(db) if db is not None else b""
            tmp = self.cache_dir / f".hs-{key}.{os.getpid()}"
            tmp.write_bytes(json.dumps(bad_pos).encode() + b"\n" + blob)
            tmp.replace(self.cache_dir / f"hs-{key}.db")
        except (OSError, _hs.error) as exc:
            log.debug("hyperscan cache not written: %s", exc)

    def _scratches(self) -> list:
        """Hyperscan scratch space of the calling thread (one per database)."""
        scratches = getattr(self._local, "scratches", None)
        if scratches is None:
            assert _hs is not None
            scratches = [_hs.Scratch(db) for db in self._dbs]
            self._local.scratches = scratches
        return scratches

    def candidates(self, texts: Sequence[bytes], joined: bytes | None = None) -> set[int]:
        """Indexes of the rules that may match one of ``texts``."""
        found: set[int] = set(self.always)
        if not texts:
            return found
        data = joined if joined is not None else b"\n".join(texts)
        if self._dbs:
            def on_match(rule: int, start: int, end: int, flags: int, ctx: object) -> None:
                found.add(rule)
            for db, scratch in zip(self._dbs, self._scratches(), strict=True):
                db.scan(data, match_event_handler=on_match, scratch=scratch)
        if self.literals:
            lower = data.lower()
            for i, lit, caseless in self.literals:
                if lit in (lower if caseless else data):
                    found.add(i)
        return found


def _compile_db(items: list[tuple[int, Translated]]) -> object:
    assert _hs is not None
    db = _hs.Database()
    db.compile(expressions=[tr.pcre.encode("latin-1") for _, tr in items],  # type: ignore[union-attr]
               ids=[i for i, _ in items], elements=len(items),
               flags=[_flags(tr) for _, tr in items])
    return db


def _find_bad(items: list[tuple[int, Translated]]) -> list[int]:
    """Bisect to the rule indexes Hyperscan rejects."""
    assert _hs is not None
    if len(items) == 1:
        return [items[0][0]]
    mid = len(items) // 2
    bad: list[int] = []
    for half in (items[:mid], items[mid:]):
        try:
            _compile_db(half)
        except _hs.error:
            bad.extend(_find_bad(half))
    return bad


def hs_suitable(tr: Translated) -> bool:
    """Whether a pattern goes into the Hyperscan database.

    Bounded repeats above MAX_HS_REPEAT take Hyperscan seconds each to compile
    (measured: up to 25 s for one pattern), the more so in long patterns; relaxing the
    repeats instead made the prefilter pass so often that evaluation got slower. Such
    patterns use the literal prefilter (or always run). Long patterns without big
    repeats (SpamAssassin's generated FUZZY_* alternations of look-alike characters,
    3-12 KB) compile in 0.03-0.8 s, are selective, and cost the most when they run on
    every message, so patterns go in up to MAX_HS_LONG_PATTERN characters.
    """
    pcre = tr.pcre
    if pcre is None or len(pcre) > MAX_HS_LONG_PATTERN or _ABS_ANCHOR.search(pcre):
        return False
    for m in _BIG_REPEAT.finditer(pcre):
        if m.group(1):
            continue
        bounds = [int(x) for x in m.groups()[1:] if x]
        if max(bounds) > MAX_HS_REPEAT:
            return False
    return True


def split_long(tr: Translated) -> list[Translated] | None:
    r"""A pattern too long for Hyperscan as several shorter ones with the same matches.

    ``P(?:A|B)S`` matches exactly what ``P(?:A)S`` and ``P(?:B)S`` match together, and
    Hyperscan reports the same rule for each part. SpamAssassin's 37-224 KB look-alike
    patterns (``__PAY_ME``, ``__YOUR_PASSWORD``, ...) are ``(?:^|\s)(?:phrase|...)``
    with alternations inside the phrases too; distributed over them, every part fits.
    A part that is a long sequence of medium items is cut to its leading items (a match
    of the whole starts with a match of those), so the parts may match more than the
    pattern: fine for a prefilter. None when the pattern is not of that shape or needs
    more than MAX_PARTS parts.
    """
    pcre = tr.pcre
    if pcre is None or len(pcre) <= MAX_HS_LONG_PATTERN or _ABS_ANCHOR.search(pcre):
        return None
    parts: list[str] = []
    if not _distribute(pcre, parts):
        return None
    out = [dataclasses.replace(tr, pcre=part) for part in parts]
    return out if all(hs_suitable(part) for part in out) else None


MAX_PARTS = 200


def _distribute(pattern: str, out: list[str]) -> bool:
    """Append to ``out`` patterns of at most MAX_HS_LONG_PATTERN characters whose union
    matches what ``pattern`` matches; False if that is not possible here."""
    if len(pattern) <= MAX_HS_LONG_PATTERN:
        out.append(pattern)
        return len(out) <= MAX_PARTS
    items = _top_level(pattern)
    if items is None:
        return False
    if "|" in items:
        return all(_distribute("".join(branch), out) for branch in _split(items))
    k = max(range(len(items)), key=lambda n: len(items[n]))
    group = items[k]
    if len(group) <= MAX_HS_LONG_PATTERN // 2:
        # A long sequence of medium items: every match starts with a match of its
        # leading items, so those are a (looser) prefilter for the whole.
        lead = ""
        for item in items:
            if len(lead) + len(item) > MAX_HS_LONG_PATTERN:
                break
            lead += item
        out.append(lead)
        return len(out) <= MAX_PARTS
    if group.startswith("(?:") and group.endswith(")?"):  # optional: without it, or with it
        head, tail = "".join(items[:k]), "".join(items[k + 1:])
        return _distribute(head + tail, out) and _distribute(head + group[:-1] + tail, out)
    if not (group.startswith("(?:") and group.endswith(")")):
        return False  # the long item is repeated or not a plain group
    inner = _top_level(group[3:-1])
    if inner is None:
        return False
    head, tail = "".join(items[:k]), "".join(items[k + 1:])
    if "|" not in inner:  # a plain group: its items take its place
        return _distribute(head + "".join(inner) + tail, out)
    return all(_distribute(f"{head}(?:{''.join(branch)}){tail}", out)
               for branch in _split(inner))


def _split(items: list[str]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for item in items:
        if item == "|":
            out.append([])
        else:
            out[-1].append(item)
    return out


_ESCAPE = re.compile(r"\\(?:x\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|[^0-9a-zA-Z]|[dDwWsSbBnrtfvea])")
_QUANT = re.compile(r"(?:[*+?]|\{\d+(?:,\d*)?\})[?+]?")


def _top_level(pattern: str) -> list[str] | None:
    """Top-level atoms of a regex (each with its quantifier) and ``|`` separators; None
    for anything this small scanner does not understand."""
    items: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "|":
            items.append("|")
            i += 1
            continue
        if c == "\\":
            m = _ESCAPE.match(pattern, i)
            end = m.end() if m else None
        elif c == "[":
            end = _class_end(pattern, i)
        elif c == "(":
            end = _group_end(pattern, i)
        elif c in "*+?{)":
            return None
        else:
            end = i + 1
        if end is None:
            return None
        m = _QUANT.match(pattern, end)
        items.append(pattern[i:m.end() if m else end])
        i = m.end() if m else end
    return items


def _class_end(p: str, i: int) -> int | None:
    """End of the character class at ``i``, or None when it is not closed."""
    end = _skip_class(p, i)
    return end if end <= len(p) else None


def _group_end(p: str, i: int) -> int | None:
    depth = 0
    j = i
    while j < len(p):
        c = p[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            end = _class_end(p, j)
            if end is None:
                return None
            j = end
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return None


def _flags(tr: Translated) -> int:
    assert _hs is not None
    flags = (_hs.HS_FLAG_PREFILTER | _hs.HS_FLAG_SINGLEMATCH | _hs.HS_FLAG_ALLOWEMPTY
             | _hs.HS_FLAG_MULTILINE)
    if "i" in tr.flags:
        flags |= _hs.HS_FLAG_CASELESS
    if "s" in tr.flags:
        flags |= _hs.HS_FLAG_DOTALL
    return flags


_META = set(".^$*+?{}[]\\|()")


def required_literal(pattern: str, caseless: bool) -> bytes | None:
    """The longest literal that every match of ``pattern`` contains, or None.

    Only the top-level sequence is looked at: a top-level alternation gives None;
    groups, classes and optional or repeated items end the current literal.
    """
    best = ""
    current = ""
    i = 0
    depth = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if depth == 0 and not nxt.isalnum():
                current += nxt
                i += 2
                if _quantified(pattern, i):
                    current = current[:-1]
                    best, current = _longer(best, current), ""
                continue
            if depth == 0 and nxt == "x" and re.match(r"[0-9a-fA-F]{2}", pattern[i + 2:i + 4]):
                current += chr(int(pattern[i + 2:i + 4], 16))
                i += 4
                if _quantified(pattern, i):
                    current = current[:-1]
                    best, current = _longer(best, current), ""
                continue
            best, current = _longer(best, current), ""
            i += 2
            continue
        if c == "[":
            best, current = _longer(best, current), ""
            i = _skip_class(pattern, i)
            continue
        if c == "(":
            best, current = _longer(best, current), ""
            depth += 1
            i += 1
            continue
        if c == ")":
            depth -= 1
            i += 1
            continue
        if c == "|":
            if depth == 0:
                return None
            i += 1
            continue
        if depth > 0:
            i += 1
            continue
        if c in _META:
            if c in "*?{":
                current = current[:-1]
            best, current = _longer(best, current), ""
            if c == "{":
                end = pattern.find("}", i)
                i = n if end < 0 else end + 1
                continue
            i += 1
            continue
        current += c
        i += 1
        if _quantified(pattern, i):
            current = current[:-1]
            best, current = _longer(best, current), ""
    best = _longer(best, current)
    if len(best) < MIN_LITERAL:
        return None
    out = best.encode("latin-1", "replace")
    return out.lower() if caseless else out


def _quantified(pattern: str, i: int) -> bool:
    return i < len(pattern) and pattern[i] in "*?{"


def _longer(a: str, b: str) -> str:
    return b if len(b) > len(a) else a


def _skip_class(pattern: str, i: int) -> int:
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1

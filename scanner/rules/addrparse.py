"""Address header values read as SpamAssassin 4 reads them for ``:addr`` and ``:name``.

SpamAssassin's ``PerMsgStatus::get`` hands a raw From/To/... value to
``Util::parse_header_addresses``, a deliberately relaxed reader (Debian's package does
not pull in ``Email::Address::XS``, the alternative it prefers when installed). Python's
``email.utils.getaddresses`` reads malformed values differently (``a@b.c <d@e.f>``
gave two addresses, ``Doe, John <j@x>`` an address ``Doe``, ``Alice <a@x> junk`` an
address ``junk``, ``(comment) a@x`` an address where SpamAssassin has none), so rules
written for SpamAssassin matched other text. This module follows SpamAssassin's reading,
checked value by value with ``scripts/address_differential.py`` over
``corpora/addresses/values.txt`` and the SpamAssassin public corpus:

1. trailing white space and every pair of backslashes are dropped; a leading group
   name (``friends:``) goes, with the rest of the value when ``;`` follows at once;
2. entries are read one after another from the start, each ``[phrase] <address>``
   (further ``<...>`` ignored), a bare ``user@domain``, or a phrase alone; then an
   optional ``(comment)``; then ``,``, ``;`` or the end. The first text no entry fits
   ends the reading;
3. an address in angle brackets has its comments removed and must look like
   ``local@domain`` (else the entry has none); an address with one ``"``, or starting
   ``""@``, is none either;
4. the phrase loses its quotes (backslash escapes undone inside them) and its comments
   outside them; a phrase alone that looks like an address with a valid host name
   becomes the address; a phrase equal to the address, or empty, is none; an entry
   without a phrase takes its comment as one;
5. the address is cut at a second ``@``;
6. if text with an ``@`` is left over, every ``<local@domain>`` in it is an address.

Works on text whose characters are octets (latin-1), as SpamAssassin on bytes; white
space is ASCII white space. The angle-bracket pattern fails in linear time (see
:data:`_ENTRY`), whatever the value.
"""

from __future__ import annotations

import re
from functools import lru_cache

from scanner.idn import to_ascii

_QUOTED = r'"(?:[^"\\]++|\\.)*+"'
_PHRASE = rf'(?:{_QUOTED}|[^",;<]++)+'
_MAIL = rf'(?:{_QUOTED}|[^@\s<>()\[\],:;]+)@(?:[^"\s<>()\[\],:;]+|\[[\d:.]+\])'
_COMMENT_BODY = r"(?:[^()\\]++|\\.)*+"
_END = rf"(?:\s*\((?P<comment>{_COMMENT_BODY})\))?\s*(?:[,;]|\Z)"  # comment, separator
_BARE = re.compile(rf"(?P<bare>{_MAIL}){_END}", re.I | re.A)
_ALONE = re.compile(rf"(?P<alone>{_PHRASE}){_END}", re.A)
_BEFORE_ANGLE = re.compile(rf"(?P<phrase>{_PHRASE})\s*(?=<)", re.A)
_REST = re.compile(_END, re.A)
_QUOTED_RE = re.compile(_QUOTED)
_STOP = re.compile(r"[>@]")
_GROUP = re.compile(r'[^"()<>]+:\s*(?:;.*)?', re.S | re.A)
_MAIL_ONLY = re.compile(rf"{_MAIL}\n?", re.I | re.A)
_BRACKETED = re.compile(rf"<({_MAIL})>", re.I | re.S | re.A)
_COMMENT = re.compile(rf"\({_COMMENT_BODY}\)", re.S | re.A)
_PHRASE_PIECE = re.compile(r'"((?:[^"\\]++|\\.)*+)"|([^"]++)', re.S)
_ESCAPE = re.compile(r"\\(?!\\)")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_WHITE = " \t\n\r\f\v"

Entry = tuple[str | None, str | None]
Tail = tuple[int, str | None] | None  # (end of the entry, its comment), or no match


@lru_cache(maxsize=1024)  # pure; From/To are read by several rules and recur across mail
def entries(value: bytes) -> tuple[Entry, ...]:
    """``(phrase, address)`` of each entry of a raw header value (octets as latin-1
    characters); either may be None, as SpamAssassin's ``phrase`` and ``address``."""
    text = value.decode("latin-1").rstrip(_WHITE).replace("\\\\", "")
    group = _GROUP.match(text)
    if group:
        text = text[group.end():]
    if not text.strip(_WHITE):
        return ()
    reader = _Reader(text)
    found: list[Entry] = []
    pos = 0
    while (read := reader.entry(pos)) is not None:
        found.append(read[0])
        pos = read[1]
    rest = text[pos:]
    if "@" in rest:
        found += [(None, _cut(a)) for a in _BRACKETED.findall(rest) if _plausible(a)]
    return tuple(found)


class _Reader:
    """One value's entries, read as SpamAssassin's backtracking pattern reads them.

    Its angle-bracket part (``<`` text without ``>``/``@`` then a run without white
    space, ``>``, more ``<...>``, a comment, a separator) lets the run cross ``>`` and
    ``<``: ``<<a@x>>`` holds ``<a@x>``, ``<a@x>,<b@y>`` is one entry. A regex engine
    tries every split of such text again for each way the rest can fail (seconds for
    an 8 KB value, and exponential for ``<><><>...x``), so the same choices are made
    here once per ``>``: the first choice Perl would try that lets the rest match is
    the last ``>`` of the run whose rest matches, worked out right to left."""

    def __init__(self, text: str) -> None:
        self.text = text
        n = len(text)
        self.run_end = [n] * (n + 1)  # where the run of non-white characters at i ends
        for i in range(n - 1, -1, -1):
            self.run_end[i] = self.run_end[i + 1] if text[i] not in _WHITE else i
        self.after: dict[int, Tail] = {}  # a ">" at g: what follows it reads as
        self.last_good: dict[int, int] = {}  # run end: its last ">" followed by a match
        for g in range(n - 1, -1, -1):
            if text[g] == ">":
                self.after[g] = tail = self._tail(g + 1)
                if tail is not None:
                    self.last_good.setdefault(self.run_end[g], g)

    def _skip(self, i: int) -> int:
        text, n = self.text, len(self.text)
        while i < n and text[i] in _WHITE:
            i += 1
        return i

    def _tail(self, pos: int) -> Tail:
        """More ``<...>`` (as many as let the rest match), a comment, a separator."""
        text = self.text
        w = self._skip(pos)
        if w < len(text) and text[w] == "<":
            q = self._skip(w + 1)
            quoted = _QUOTED_RE.match(text, q)
            for start in ([quoted.end()] if quoted else []) + [q]:
                if start < len(text) and text[start] not in _WHITE:
                    found = self._run_to_gt(start)
                    if found is not None:
                        return found
            if q < len(text) and text[q] == ">" and self.after[q] is not None:
                return self.after[q]
        m = _REST.match(text, pos)
        return (m.end(), m.group("comment")) if m else None

    def _run_to_gt(self, start: int) -> Tail:
        """A run without white space from ``start``, then ``>`` (white space before it
        allowed after the whole run), then a match: the longest such run first."""
        end = self.run_end[start]
        h = self._skip(end)
        if h < len(self.text) and self.text[h] == ">" and self.after[h] is not None:
            return self.after[h]
        g = self.last_good.get(end, -1)
        return self.after[g] if g > start else None

    def entry(self, pos: int) -> tuple[Entry, int] | None:
        """The entry at ``pos`` and where the next one starts, or None."""
        text = self.text
        p0 = self._skip(pos)
        if p0 >= len(text):
            return None
        if text[p0] == "<":
            phrase, lt = None, p0
        else:
            m = _BEFORE_ANGLE.match(text, p0)
            phrase, lt = (m.group("phrase"), m.end()) if m else (None, -1)
        if lt >= 0:
            angle = self._angle(self._skip(lt + 1))
            if angle is not None:
                address, (end, comment) = angle
                return _entry(phrase, address, None, comment), end
        m = _BARE.match(text, p0) or _ALONE.match(text, p0)
        if m is None and p0 > pos and text[p0] in ",;":  # a phrase of one white character
            m = _ALONE.match(text, p0 - 1)
        if m is None:
            return None
        groups = m.groupdict()
        return _entry(groups.get("alone"), None, groups.get("bare"), m.group("comment")), m.end()

    def _angle(self, q: int) -> tuple[str, tuple[int, str | None]] | None:
        """What ``<`` holds from ``q`` (past white space) and how the entry ends."""
        text, n = self.text, len(self.text)
        found = _STOP.search(text, q)
        stop = found.start() if found else n
        if stop < n:
            end = self.run_end[stop]
            h = self._skip(end)
            if h < n and text[h] == ">" and self.after[h] is not None:
                return text[q:end], self.after[h]
            g = self.last_good.get(end, -1)
            if g > stop or g == stop and text[q:g].strip(_WHITE):
                return text[q:g].rstrip(_WHITE), self.after[g]  # type: ignore[return-value]
        if q < n and text[q] == ">" and self.after[q] is not None:
            return "", self.after[q]  # type: ignore[return-value]
        return None


def _entry(phrase: str | None, angle: str | None, bare: str | None,
           comment: str | None) -> Entry:
    address = bare
    if angle is not None:
        address = _COMMENT.sub("", angle)
        if not _MAIL_ONLY.fullmatch(address):
            address = None
    if address is not None and not _plausible(address):
        address = None
    if phrase is not None:
        phrase = _unquoted(phrase)
        if address is None and _is_address(phrase):
            address, phrase = phrase, None
        elif phrase == "" or phrase == address:
            phrase = None
    if phrase is None:
        phrase = comment
    return phrase, (_cut(address) if address is not None else None)


def _unquoted(phrase: str) -> str:
    """Quoted pieces without their quotes and escapes, comments outside them gone;
    a stray ``"`` is dropped."""
    out = []
    for quoted, plain in _PHRASE_PIECE.findall(phrase) if '"' in phrase else [("", phrase)]:
        if plain:
            out.append(_COMMENT.sub("", plain))
        else:
            out.append(_ESCAPE.sub("", quoted).replace("\\\\", "\\"))
    return "".join(out)


def _plausible(address: str) -> bool:
    """SpamAssassin's check of common parsing mistakes: one stray quote, ``""@``."""
    return not address.startswith('""@') and address.count('"') != 1


def _is_address(phrase: str) -> bool:
    """A phrase that is an address with a valid host name (then read as the address)."""
    if not _MAIL_ONLY.fullmatch(phrase) or not _plausible(phrase):
        return False
    return valid_host(phrase.split("@", 2)[1])


def _cut(address: str) -> str:
    """The address up to a second ``@`` (the rest of that line goes too)."""
    first = address.find("@")
    second = address.find("@", first + 1)
    if second < 0:
        return address
    end = address.find("\n", second)
    return address[:second] + (address[end:] if end >= 0 else "")


def valid_host(host: str) -> bool:
    """SpamAssassin's ``is_fqdn_valid``: two labels or more, each 1-63 letters, digits,
    ``-`` inside or ``_`` (not in the last two), 253 characters at most. A non-ASCII
    name is checked in its IDNA form (as SpamAssassin with Net::LibIDN2; without it,
    as Debian installs it, such a name is never valid)."""
    if not host.isascii():
        try:
            host = to_ascii(host.encode("latin-1").decode("utf-8"))
        except (UnicodeError, ValueError):
            return False
        if not host:
            return False
    labels = host.lower().rstrip(".").split(".")
    if len(labels) < 2 or len(".".join(labels)) > 253:
        return False
    for left, label in enumerate(reversed(labels)):
        if not 0 < len(label) <= 63 or not _LABEL.fullmatch(label):
            return False
        if left < 2 and "_" in label:
            return False
    return True

"""Translate Perl regular expressions (as written in SpamAssassin rules) to ``regex``.

Rules are matched against bytes, as SpamAssassin does with ``normalize_charset`` off, so
patterns are handled as Latin-1 text (one character per octet) and compiled as bytes
patterns: ``\\w``, ``\\d``, ``\\s`` and ``/i`` are ASCII-only, like Perl on octet
strings.

:func:`translate` walks the pattern once and writes two renderings: one for the
``regex`` module (the exact matcher) and one in PCRE syntax for Hyperscan (a prefilter
only; every Hyperscan candidate is confirmed with the exact regex). Constructs whose
meaning differs are rewritten: ``\\z`` and ``\\Z``, ``\\Q..\\E``, ``\\h``/``\\v``/``\\R``,
octal and ``\\x{..}`` escapes, ``\\g{N}`` back references, POSIX classes, inline
``(?i)`` scoped to the rest of its group, ``(?^...)``, ``/x`` whitespace and comments,
and literal braces. What Python cannot express raises :class:`Untranslatable` naming
the feature, so callers can count them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import regex

from scanner.rules.delimit import FLAG_CHARS, split_delimited

__all__ = ["FLAG_CHARS", "Translated", "Untranslatable", "regex_flags", "split_delimited",
           "translate"]

_POSIX = {
    "alpha": "A-Za-z", "digit": "0-9", "alnum": "A-Za-z0-9", "upper": "A-Z",
    "lower": "a-z", "space": " \\t\\n\\r\\f\\x0b", "blank": " \\t", "punct":
    "!-\\/:-@\\[-`{-~", "xdigit": "0-9A-Fa-f", "word": "A-Za-z0-9_", "cntrl":
    "\\x00-\\x1f\\x7f", "print": " -~", "graph": "!-~", "ascii": "\\x00-\\x7f",
}
_HSPACE = "\\t \\xa0"
_VSPACE = "\\n\\x0b\\f\\r\\x85"


class Untranslatable(ValueError):
    """The pattern uses a Perl feature with no faithful ``regex`` equivalent."""

    def __init__(self, feature: str, detail: str = "") -> None:
        super().__init__(f"{feature}{': ' + detail if detail else ''}")
        self.feature = feature


@dataclass(slots=True)
class Translated:
    """A translated pattern: ``python`` for ``regex``, ``pcre`` for Hyperscan (or None)."""

    python: str
    flags: str
    pcre: str | None
    features: set[str] = field(default_factory=set)

    def compile(self) -> regex.Pattern:
        return regex.compile(self.python.encode("latin-1"), regex_flags(self.flags))


def regex_flags(flags: str) -> int:
    """``regex`` flags for Perl modifiers (ASCII semantics, version 0)."""
    out = regex.VERSION0 | regex.ASCII
    if "i" in flags:
        out |= regex.IGNORECASE
    if "m" in flags:
        out |= regex.MULTILINE
    if "s" in flags:
        out |= regex.DOTALL
    return out


def translate(pattern: str, flags: str = "") -> Translated:
    """Translate one Perl pattern body with its modifiers."""
    if "e" in flags:
        raise Untranslatable("modifier /e")
    return _Translator(pattern, flags).run()


class _Translator:
    def __init__(self, pattern: str, flags: str) -> None:
        self.p = pattern
        self.i = 0
        self.flags = "".join(f for f in flags if f in "ims")
        self.xmode = "x" in flags
        self.py: list[str] = []
        self.hs: list[str] | None = []
        self.features: set[str] = set()
        self.groups = 0
        # one entry per open group: (extra ")" to close for scoped inline flags, saved x)
        self.stack: list[list] = []
        self.total_groups = _count_groups(pattern)
        self.toplevel_close = 0

    # -- output helpers -------------------------------------------------------------
    def emit(self, py: str, hs: str | None = "") -> None:
        self.py.append(py)
        if self.hs is not None:
            if hs is None:
                self.hs = None
            else:
                self.hs.append(py if hs == "" else hs)

    def no_hs(self, feature: str) -> None:
        self.features.add(feature)
        self.hs = None

    def run(self) -> Translated:
        p = self.p
        while self.i < len(p):
            c = p[self.i]
            if self.xmode and c in " \t\n\r\f\x0b":
                self.i += 1
            elif self.xmode and c == "#":
                end = p.find("\n", self.i)
                self.i = len(p) if end < 0 else end + 1
            elif c == "\\":
                self.escape(in_class=False)
            elif c == "[":
                self.char_class()
            elif c == "(":
                self.group()
            elif c == ")":
                self.close_group()
            elif c == "{":
                self.brace()
            elif c in "*+?":
                self.emit(c)
                self.i += 1
                self.quantifier_suffix()
            else:
                self.emit(c if c not in "\x00" else "\\x00")
                self.i += 1
        if self.stack:
            raise Untranslatable("syntax", "unbalanced parenthesis")
        self.emit(")" * self.toplevel_close)
        return Translated("".join(self.py), self.flags,
                          None if self.hs is None else "".join(self.hs), self.features)

    def quantifier_suffix(self) -> None:
        if self.i < len(self.p) and self.p[self.i] in "+?":
            if self.p[self.i] == "+":
                self.features.add("possessive quantifier")
            self.emit(self.p[self.i])
            self.i += 1

    def brace(self) -> None:
        m = _rx(r"\{(\d*)(,?)(\d*)\}", self.p, self.i)
        if m and (m.group(1) or m.group(3)) and self.py and self.py[-1] not in ("(", "|"):
            lo, comma, hi = m.groups()
            text = "{" + (lo or "0") + comma + hi + "}"
            self.emit(text)
            self.i = m.end()
            self.quantifier_suffix()
        else:
            self.emit("\\{")
            self.i += 1

    # -- escapes ----------------------------------------------------------------------
    def escape(self, in_class: bool) -> None:
        p = self.p
        if self.i + 1 >= len(p):
            self.emit("\\\\")
            self.i += 1
            return
        c = p[self.i + 1]
        self.i += 2
        if c == "Q":
            end = p.find("\\E", self.i)
            text = p[self.i:] if end < 0 else p[self.i:end]
            self.i = len(p) if end < 0 else end + 2
            for ch in text:
                self.emit(_lit(ch))
            return
        if c == "E":
            return
        if c in "dDwWsS":
            self.emit("\\" + c)
        elif c == "b" and in_class:
            self.emit("\\x08")
        elif c in "bB" and not in_class:
            self.emit("\\" + c)
        elif c in "AG" and not in_class:
            self.emit("\\" + c, "" if c == "A" else None)
            if c == "G":
                self.features.add("\\G")
        elif c == "z" and not in_class:
            self.emit("\\Z", "\\z")
        elif c == "Z" and not in_class:
            self.emit("(?=\\n?\\Z)", "\\Z")
        elif c == "K" and not in_class:
            self.emit("\\K", None)
            self.features.add("\\K")
        elif c == "h":
            self.emit(_HSPACE if in_class else f"[{_HSPACE}]")
        elif c == "H":
            if in_class:
                raise Untranslatable("\\H inside a character class")
            self.emit(f"[^{_HSPACE}]")
        elif c == "v":
            self.emit(_VSPACE if in_class else f"[{_VSPACE}]")
        elif c == "V":
            if in_class:
                raise Untranslatable("\\V inside a character class")
            self.emit(f"[^{_VSPACE}]")
        elif c == "R" and not in_class:
            self.emit(f"(?:\\r\\n|[{_VSPACE}])")
        elif c == "N" and not in_class:
            if p[self.i:self.i + 1] == "{":
                raise Untranslatable("\\N{name}")
            self.emit("[^\\n]")
        elif c in "tnrf":
            self.emit("\\" + c)
        elif c == "e":
            self.emit("\\x1b")
        elif c == "a":
            self.emit("\\x07")
        elif c == "c":
            if self.i >= len(p):
                raise Untranslatable("syntax", "\\c at end")
            self.emit(_hex(ord(p[self.i].upper()) ^ 64))
            self.i += 1
        elif c == "x":
            self.hex_escape()
        elif c == "o" and p[self.i:self.i + 1] == "{":
            end = p.find("}", self.i)
            self.emit(_codepoint(int(p[self.i + 1:end] or "0", 8)))
            self.i = end + 1
        elif c.isdigit():
            self.digit_escape(c, in_class)
        elif c == "g" and not in_class:
            self.backref_g()
        elif c == "k" and not in_class:
            m = _rx(r"(?:<(\w+)>|\{(\w+)\}|'(\w+)')", p, self.i)
            if not m:
                raise Untranslatable("syntax", "bad \\k")
            self.emit(f"(?P={m.group(1) or m.group(2) or m.group(3)})", None)
            self.features.add("backreference")
            self.i = m.end()
        elif c in "pP":
            raise Untranslatable("Unicode property \\p")
        elif c in "XC":
            raise Untranslatable(f"\\{c}")
        elif c.isalnum():
            self.emit(_lit(c))  # Perl: unknown letter escapes are the letter itself
        else:
            self.emit(_lit(c))

    def hex_escape(self) -> None:
        p = self.p
        if p[self.i:self.i + 1] == "{":
            end = p.find("}", self.i)
            if end < 0:
                raise Untranslatable("syntax", "unterminated \\x{")
            digits = p[self.i + 1:end].strip().replace("_", "")
            self.i = end + 1
            value = int(digits, 16) if digits else 0
        else:
            m = _rx(r"[0-9A-Fa-f]{0,2}", p, self.i)
            digits = m.group(0) if m else ""
            self.i += len(digits)
            value = int(digits, 16) if digits else 0
        self.emit(_codepoint(value))

    def digit_escape(self, c: str, in_class: bool) -> None:
        p = self.p
        m = _rx(r"\d*", p, self.i)
        digits = c + (m.group(0) if m else "")
        if c == "0" or in_class or (len(digits) > 1 and int(digits) > self.total_groups):
            octal = _rx(r"[0-7]{1,3}", digits)
            text = octal.group(0) if octal else "0"
            self.i += len(text) - 1
            self.emit(_codepoint(int(text, 8)))
            return
        self.i += len(digits) - 1
        self.emit(f"\\{digits}" if len(digits) == 1 else f"(?:\\{digits})")
        self.features.add("backreference")

    def backref_g(self) -> None:
        m = _rx(r"(?:\{(-?\d+|\w+)\}|(-?\d+))", self.p, self.i)
        if not m:
            raise Untranslatable("syntax", "bad \\g")
        ref = m.group(1) or m.group(2)
        self.i = m.end()
        self.features.add("backreference")
        if ref.lstrip("-").isdigit():
            n = int(ref)
            if n < 0:
                n = self.groups + 1 + n
            if n <= 0:
                raise Untranslatable("syntax", "bad relative back reference")
            self.emit(f"(?:\\{n})", None)
        else:
            self.emit(f"(?P={ref})", None)

    # -- character classes ------------------------------------------------------------
    def char_class(self) -> None:
        p = self.p
        self.i += 1
        out = ["["]
        if p[self.i:self.i + 1] == "^":
            out.append("^")
            self.i += 1
        first = True
        while True:
            if self.i >= len(p):
                raise Untranslatable("syntax", "unterminated character class")
            c = p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[" and p[self.i:self.i + 2] == "[:":
                end = p.find(":]", self.i)
                if end > 0:
                    name = p[self.i + 2:end]
                    neg = name.startswith("^")
                    chars = _POSIX.get(name.lstrip("^"))
                    if chars is None:
                        raise Untranslatable("POSIX class", name)
                    if neg:
                        raise Untranslatable("negated POSIX class")
                    out.append(chars)
                    self.i = end + 2
                    continue
            if c == "\\":
                saved_py, saved_hs = self.py, self.hs
                self.py, self.hs = [], []
                self.escape(in_class=True)
                piece_py = "".join(self.py)
                piece_hs = self.hs
                self.py, self.hs = saved_py, saved_hs
                if piece_hs is None:
                    self.hs = None
                if piece_py.startswith(("(", "[")):
                    raise Untranslatable("escape inside a character class", piece_py)
                out.append(piece_py)
                continue
            if c in "[]&|~-" and c != "-":
                out.append("\\" + c)
            elif c == "\x00":
                out.append("\\x00")
            else:
                out.append(c)
            self.i += 1
        out.append("]")
        text = "".join(out)
        if text in ("[]", "[^]"):
            raise Untranslatable("syntax", "empty character class")
        self.emit(text)

    # -- groups ---------------------------------------------------------------------
    def group(self) -> None:
        p, i = self.p, self.i
        if p.startswith("(?#", i):
            end = p.find(")", i)
            self.i = len(p) if end < 0 else end + 1
            return
        if p.startswith("(*", i):
            m = _rx(r"\(\*(\w+)\)", p, i)
            verb = m.group(1) if m else ""
            if m and verb in ("FAIL", "F"):
                self.emit("(?!)")
                self.i = m.end()
                return
            raise Untranslatable("backtracking control verb", verb)
        if p.startswith("(?{", i) or p.startswith("(??{", i):
            raise Untranslatable("embedded Perl code")
        m = _rx(r"\(\?(\^?)([a-zA-Z]*)(?:-([a-zA-Z]*))?(:|\))", p, i)
        if m:
            self.inline_flags(m)
            return
        self.i += 1
        if not p.startswith("(?", i):
            self.groups += 1
            self.push("(")
            return
        for prefix in ("(?:", "(?=", "(?!", "(?<=", "(?<!", "(?>", "(?|"):
            if p.startswith(prefix, i):
                self.i = i + len(prefix)
                if prefix in ("(?<=", "(?<!", "(?=", "(?!"):
                    self.features.add("lookaround")
                if prefix in ("(?>", "(?|"):
                    self.features.add("atomic group" if prefix == "(?>" else "branch reset")
                    self.hs = None if prefix == "(?|" else self.hs
                self.push(prefix)
                return
        named = _rx(r"\(\?(?:P?<(\w+)>|'(\w+)')", p, i)
        if named:
            self.groups += 1
            self.i = named.end()
            self.push(f"(?P<{named.group(1) or named.group(2)}>", "(")
            return
        if _rx(r"\(\?(?:[+-]?\d+|R|&\w+|P>\w+)\)", p, i):
            raise Untranslatable("recursion")
        if p.startswith("(?(", i):
            raise Untranslatable("conditional group")
        raise Untranslatable("syntax", f"unknown group {p[i:i + 6]!r}")

    def push(self, py: str, hs: str = "") -> None:
        self.emit(py, hs)
        self.stack.append([0, self.xmode])

    def inline_flags(self, m: re.Match) -> None:
        caret, on, off, end = m.group(1), m.group(2), m.group(3) or "", m.group(4)
        self.i = m.end()
        if set(on + off) - FLAG_CHARS:
            raise Untranslatable("syntax", f"unknown inline flag in {m.group(0)!r}")
        x_before = self.xmode
        if caret:
            self.xmode = False
        if "x" in on:
            self.xmode = True
        if "x" in off:
            self.xmode = False
        keep_on = "".join(f for f in on if f in "ims")
        keep_off = "".join(f for f in off if f in "ims")
        if caret:
            keep_off = "".join(f for f in "ims" if f not in keep_on)
        spec = keep_on + (f"-{keep_off}" if keep_off else "")
        if end == ":":
            self.emit(f"(?{spec}:" if spec else "(?:")
            self.stack.append([0, x_before])
            return
        # (?flags) applies to the rest of the enclosing group: open a scoped group
        # closed together with the enclosing one (or at the end of the pattern)
        if spec:
            self.emit(f"(?{spec}:")
            if self.stack:
                self.stack[-1][0] += 1
            else:
                self.toplevel_close += 1

    def close_group(self) -> None:
        self.i += 1
        if not self.stack:
            raise Untranslatable("syntax", "unmatched )")
        extra, saved_x = self.stack.pop()
        self.emit(")" * extra + ")")
        self.xmode = saved_x


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _rx(pattern: str, text: str, pos: int = 0) -> re.Match | None:
    """Match a fixed helper pattern at ``pos`` (no slicing: long patterns stay linear)."""
    return _compiled(pattern).match(text, pos)


def _count_groups(pattern: str) -> int:
    n = 0
    i = 0
    in_class = False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
        elif c == "(" and (pattern[i + 1:i + 2] != "?" or
                           _rx(r"\(\?(?:P?<\w|')", pattern, i)):
            n += 1
        i += 1
    return n


def _hex(value: int) -> str:
    return f"\\x{value:02x}"


def _codepoint(value: int) -> str:
    if value > 0xFF:
        raise Untranslatable("character above \\xff", f"\\x{{{value:x}}}")
    return _hex(value)


def _lit(ch: str) -> str:
    if ord(ch) < 0x20 or ord(ch) >= 0x7F:
        return _hex(ord(ch))
    if ch in ".^$*+?{}[]\\|()# ":
        return "\\" + ch
    return ch

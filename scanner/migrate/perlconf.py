"""Read the simple assignments of an amavis configuration (Perl) without running Perl.

amavis's configuration files are Perl code. Most of what sites change in them is plain
assignments of numbers, strings, constants and lists, which this module reads:

    $sa_tag_level_deflt = 2.0;
    $MAX_EXPANSION_QUOTA = 300*1024*1024;
    $final_spam_destiny = D_DISCARD;
    $virus_admin = "postmaster\\@$mydomain";
    @local_domains_acl = ( ".$mydomain", "example.net" );
    $interface_policy{'10026'} = 'ORIGINATING';
    $default_ldap = { hostname => 'ldap.example.com', timeout => 5 };   # a dict
    chomp($mydomain = `head -n 1 /etc/mailname`);

``read_hash("FILE")`` and ``read_array("FILE")`` become :class:`FileTable` (named, not
read). Everything else (regular expressions, hashes of lookups, subroutine calls, code) is
returned as :class:`Statement` with ``value`` left at :data:`UNREAD` and a reason, so
the caller can list it for a human. Nothing is executed; the only outside read is the
first line of a file named in the Debian idiom ``\\`head -n 1 FILE\\``` or
``\\`cat FILE\\```; ``\\`hostname --fqdn\\``` gives this host's name as scanner
finds it (:func:`scanner.hostname.local_hostname`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanner.hostname import local_hostname


class Unread(Exception):
    """A value this reader cannot work out; the message says why."""


@dataclass(frozen=True, slots=True)
class FileTable:
    """A lookup table amavis reads from a file: ``read_hash("FILE")`` (kind ``hash``)
    or ``read_array("FILE")`` (kind ``array``). Not read here: the converter decides
    whether and how (:mod:`scanner.migrate.amavis_files`)."""

    kind: str
    path: str


@dataclass(frozen=True, slots=True)
class Constant:
    """A bareword such as ``D_DISCARD``."""

    name: str


class _UnreadMarker:
    def __repr__(self) -> str:
        return "UNREAD"


UNREAD: Any = _UnreadMarker()
"""The value of a statement that could not be read."""


@dataclass(slots=True)
class Statement:
    """One top-level statement: where it is, its text and, if read, what it assigns."""

    file: str
    line: int
    text: str
    target: str = ""  # "$name", "@name" or "$name{key}"; empty when not an assignment
    value: Any = UNREAD
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}
_QUOTE_OPS = re.compile(r"(?<![\w$@%])(qr|qw|qq|q|m)\s*([^\w\s])")
_ASSIGN = re.compile(r"^([$@%])([A-Za-z_][A-Za-z_0-9]*(?:::[A-Za-z_0-9]+)*)"
                     r"(\{\s*(?:'[^']*'|\"[^\"]*\"|[\w.-]+)\s*\})?\s*=(?!=)\s*(.*)$", re.S)
_CHOMP = re.compile(r"^chomp\s*\((.*)\)$", re.S)
_NOISE = re.compile(r"^(?:use\s+strict|use\s+warnings|1|)$")
_BACKTICK_READ = re.compile(r"^\s*(?:head\s+-n\s*1|cat)\s+(\S+)\s*$")
_BACKTICK_HOSTNAME = re.compile(r"^\s*hostname\s+(?:--fqdn|-f)\s*$")


def read_files(paths: list[Path], predefined: Mapping[str, Any] | None = None
               ) -> list[Statement]:
    """Every statement of the files, in order (a later assignment overrides an earlier).

    ``predefined`` gives scalars a value before the first file is read (without the
    sigil, e.g. ``{"mydomain": "example.com"}``)."""
    scalars: dict[str, Any] = dict(predefined or {})
    found: list[Statement] = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        for line, body in split_statements(text):
            statement = Statement(str(path), line, body)
            if not _NOISE.match(body):
                interpret(statement, scalars)
                found.append(statement)
    return found


def split_statements(text: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each top-level ``;``-terminated statement, comments gone."""
    out: list[str] = []
    depth = 0
    start_line = 0
    line = 1
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        if not out and c.isspace():
            i += 1
            continue
        if not out:
            start_line = line
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c in "'\"`":
            end = _string_end(text, i + 1, c)
            out.append(text[i:end])
            line += text.count("\n", i, end)
            i = end
            continue
        m = _QUOTE_OPS.match(text, i) if c in "qm" else None
        if m:
            end = _quoted_end(text, m.end(2), m.group(2))
            while end < n and text[end].isalpha():  # regex flags such as 'i' or 'xms'
                end += 1
            out.append(text[i:end])
            line += text.count("\n", i, end)
            i = end
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif c == ";" and depth == 0:
            yield start_line, "".join(out).strip()
            out = []
            i += 1
            continue
        out.append(c)
        i += 1
    rest = "".join(out).strip()
    if rest:
        yield start_line, rest


def _string_end(text: str, i: int, quote: str) -> int:
    """Index just past the closing ``quote`` (backslash escapes honoured)."""
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    return len(text)


def _quoted_end(text: str, i: int, opening: str) -> int:
    closing = _PAIRS.get(opening, opening)
    depth = 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == opening and closing != opening:
            depth += 1
        i += 1
    return len(text)


def interpret(statement: Statement, scalars: dict[str, Any]) -> None:
    """Fill ``target`` and ``value`` (or ``reason``) of one statement."""
    body = statement.text
    chomped = _CHOMP.match(body)
    if chomped:
        body = chomped.group(1).strip()
    m = _ASSIGN.match(body)
    if not m:
        statement.reason = "not a plain assignment"
        return
    sigil, name, key, expression = m.groups()
    statement.target = sigil + name + (f"{{{_key(key)}}}" if key else "")
    try:
        value = Expression(expression, scalars).parse()
    except Unread as exc:
        statement.reason = str(exc)
        return
    if chomped and isinstance(value, str):
        value = value.rstrip("\n")
    if sigil == "@" and not isinstance(value, list):
        value = [value]
    statement.value = value
    if sigil == "$" and not key:
        scalars[name] = value


def _key(text: str) -> str:
    inner = text.strip()[1:-1].strip()
    return inner[1:-1] if inner[:1] in "'\"" else inner


class Expression:
    """A small recursive-descent reader of Perl values (see the module docstring)."""

    _TOKEN = re.compile(r"""
        (?P<space>\s+)
      | (?P<number>0x[0-9a-fA-F]+|\d[\d_]*(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<single>'(?:[^'\\]|\\.)*')
      | (?P<double>"(?:[^"\\]|\\.)*")
      | (?P<backtick>`[^`]*`)
      | (?P<qw>qw\s*(?:\((?P<qw1>[^)]*)\)|\[(?P<qw2>[^\]]*)\]|/(?P<qw3>[^/]*)/))
      | (?P<var>\$\{?[A-Za-z_][A-Za-z_0-9]*(?:::[A-Za-z_0-9]+)*\}?)
      | (?P<word>[A-Za-z_][A-Za-z_0-9]*)
      | (?P<op>=>|\*\*|[-+*/.,()\[\]{}x])
    """, re.X | re.S)

    def __init__(self, text: str, scalars: Mapping[str, Any]) -> None:
        self.scalars = scalars
        self.tokens = self._tokenise(text)
        self.pos = 0

    def _tokenise(self, text: str) -> list[tuple[str, str]]:
        tokens = []
        i = 0
        while i < len(text):
            m = self._TOKEN.match(text, i)
            if not m:
                raise Unread(f"cannot read {text[i:i + 20]!r}")
            kind = m.lastgroup or ""
            if kind.startswith("qw"):
                kind = "qw"
            if kind != "space":
                tokens.append((kind, m.group(0)))
            i = m.end()
        return tokens

    def parse(self) -> Any:
        value = self._list_or_value()
        if self.pos != len(self.tokens):
            raise Unread(f"cannot read past {self.tokens[self.pos][1]!r}")
        return value

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token[0] == "end":
            raise Unread("the value ends too early")
        self.pos += 1
        return token

    def _list_or_value(self) -> Any:
        items = [self._sum()]
        while self._peek()[1] in (",", "=>"):
            self.pos += 1
            if self._peek()[1] in (")", "]", "}", ""):
                break
            items.append(self._sum())
        return items if len(items) > 1 else items[0]

    def _sum(self) -> Any:
        value = self._product()
        while self._peek()[1] in ("+", "-", "."):
            op = self._take()[1]
            right = self._product()
            if op == ".":
                value = _text(value) + _text(right)
            else:
                value = _number(value) + (_number(right) if op == "+" else -_number(right))
        return value

    def _product(self) -> Any:
        value = self._unary()
        while self._peek()[1] in ("*", "/", "**"):
            op = self._take()[1]
            right = _number(self._unary())
            left = _number(value)
            if op == "*":
                value = left * right
            elif op == "**":
                value = left ** right
            else:
                if right == 0:
                    raise Unread("division by zero")
                value = left / right
        return value

    def _unary(self) -> Any:
        if self._peek()[1] == "-":
            self.pos += 1
            return -_number(self._unary())
        return self._atom()

    def _atom(self) -> Any:
        kind, text = self._take()
        if kind == "number":
            return _read_number(text)
        if kind == "single":
            return re.sub(r"\\([\\'])", r"\1", text[1:-1])
        if kind == "double":
            return self._interpolate(text[1:-1])
        if kind == "qw":
            inner = text[2:].strip()[1:-1]
            return inner.split()
        if kind == "backtick":
            return _backtick(text[1:-1])
        if kind == "var":
            return self._scalar(text.strip("${}"))
        if kind == "word":
            if self._peek()[1] == "=>":  # a bareword before => is a string in Perl
                return text
            if text == "undef":
                return None
            if text in ("read_hash", "read_array") and self._peek()[1] == "(":
                return self._file_table(text)
            if re.fullmatch(r"[A-Z][A-Z0-9_]*", text):
                return Constant(text)
            raise Unread(f"calls {text}()")
        if text in ("(", "["):
            closing = ")" if text == "(" else "]"
            if self._peek()[1] == closing:
                self.pos += 1
                return []
            value = self._list_or_value()
            if self._take()[1] != closing:
                raise Unread(f"expected {closing!r}")
            return value if isinstance(value, list) else [value]
        if text == "{":
            return self._hash()
        raise Unread(f"cannot read {text!r}")

    def _file_table(self, function: str) -> FileTable:
        """``read_hash("FILE")`` or ``read_array("FILE")``, the file one string."""
        self.pos += 1  # "("
        path = self._list_or_value()
        if self._take()[1] != ")" or not isinstance(path, str) or not path:
            raise Unread(f"{function}() is read only with one file name")
        return FileTable(function.removeprefix("read_"), path)

    def _hash(self) -> dict[str, Any]:
        """An anonymous hash of plain values, ``{ key => value, ... }`` (after ``{``)."""
        if self._peek()[1] == "}":
            self.pos += 1
            return {}
        value = self._list_or_value()
        if self._take()[1] != "}":
            raise Unread("expected '}'")
        items = value if isinstance(value, list) else [value]
        if len(items) % 2 or not all(isinstance(k, str) for k in items[::2]):
            raise Unread("a hash whose keys and values do not pair up")
        return dict(zip(items[::2], items[1::2], strict=True))

    def _scalar(self, name: str) -> Any:
        if name not in self.scalars:
            raise Unread(f"uses ${name}, whose value is not known here")
        return self.scalars[name]

    def _interpolate(self, body: str) -> str:
        out: list[str] = []
        i = 0
        escapes = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "e": "\x1b"}
        while i < len(body):
            c = body[i]
            if c == "\\" and i + 1 < len(body):
                out.append(escapes.get(body[i + 1], body[i + 1]))
                i += 2
                continue
            if c == "$":
                m = re.match(r"\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))", body[i:])
                if m:
                    out.append(_text(self._scalar(m.group(1) or m.group(2))))
                    i += m.end()
                    continue
            if c == "@" and re.match(r"@[A-Za-z_{]", body[i:]):
                raise Unread(f"interpolates an array in {body!r}")
            out.append(c)
            i += 1
        return "".join(out)


def _read_number(text: str) -> int | float:
    text = text.replace("_", "")
    if text.lower().startswith("0x"):
        return int(text, 16)
    return float(text) if any(ch in text for ch in ".eE") else int(text)


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unread(f"arithmetic on {value!r}")
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise Unread(f"joins {value!r} into a string")


def _backtick(command: str) -> str:
    if _BACKTICK_HOSTNAME.match(command):
        return local_hostname() + "\n"
    m = _BACKTICK_READ.match(command)
    if not m:
        raise Unread(f"runs the command `{command}`")
    path = Path(m.group(1))
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return fh.readline()
    except OSError as exc:
        raise Unread(f"reads {path}, which cannot be read ({exc.strerror})") from None


__all__ = ["UNREAD", "Constant", "FileTable", "Statement", "Unread", "interpret", "read_files",
           "split_statements"]

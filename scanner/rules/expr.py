"""Perl-style expressions of ``meta`` rules and ``if`` lines, compiled to Python.

Grammar (Perl precedence, high to low): terms and parentheses; unary ``!`` and ``-``;
``* /``; ``+ -``; ``< > <= >=``; ``== !=``; ``&&``; ``||``. A name is a rule whose value
is its hit count (0 when it did not hit, is unknown or did not run). ``&&`` and ``||``
return an operand as in Perl; division by zero gives 0 instead of dying.

The parser writes fully parenthesised Python built only from its own tokens (numbers,
operators and ``h.get('NAME', 0)``), so compiling it runs no text from the rule file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)"
                    r"|(&&|\|\||==|!=|<=|>=|[-+*/()!<>]))")
_LEVELS: tuple[tuple[str, ...], ...] = (("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="),
                                        ("+", "-"), ("*", "/"))
_PY = {"||": "or", "&&": "and"}
MAX_DEPTH = 200


class ExprError(ValueError):
    """The expression does not parse."""


def tokenize(text: str) -> list[str]:
    """Tokens of an expression; raises ExprError on anything else."""
    out: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"unexpected {text[pos:pos + 10]!r}")
        out.append(m.group(m.lastindex or 0))
        pos = m.end()
    return out


def names(tokens: list[str]) -> list[str]:
    """The rule names an expression refers to, in order, without repeats."""
    seen: dict[str, None] = {}
    for tok in tokens:
        if tok[0].isalpha() or tok[0] == "_":
            seen.setdefault(tok, None)
    return list(seen)


class _Parser:
    def __init__(self, tokens: list[str], name_code: Callable[[str], str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.name_code = name_code
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise ExprError("unexpected end of expression")
        self.pos += 1
        return tok

    def parse(self) -> str:
        if not self.tokens:
            raise ExprError("empty expression")
        code = self.binary(0)
        if self.peek() is not None:
            raise ExprError(f"unexpected {self.peek()!r}")
        return code

    def binary(self, level: int) -> str:
        if level == len(_LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in _LEVELS[level]:
            op = self.take()
            right = self.binary(level + 1)
            left = (f"_div({left}, {right})" if op == "/"
                    else f"({left} {_PY.get(op, op)} {right})")
        return left

    def unary(self) -> str:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError("expression nested too deeply")
        try:
            tok = self.peek()
            if tok == "!":
                self.take()
                return f"(not {self.unary()})"
            if tok == "-":
                self.take()
                return f"(-{self.unary()})"
            if tok == "+":
                self.take()
                return self.unary()
            return self.term()
        finally:
            self.depth -= 1

    def term(self) -> str:
        tok = self.take()
        if tok == "(":
            if self.peek() == ")":
                self.take()
                return "0"
            inner = self.binary(0)
            if self.take() != ")":
                raise ExprError("missing )")
            return f"({inner})"
        if tok[0].isdigit():
            return tok
        if tok[0].isalpha() or tok[0] == "_":
            return self.name_code(tok)
        raise ExprError(f"unexpected {tok!r}")


def _div(a: float, b: float) -> float:
    return a / b if b else 0


def to_python(tokens: list[str], name_code: Callable[[str], str] | None = None) -> str:
    """Python source for the expression (names read from a mapping ``h``)."""
    code = name_code or (lambda n: f"h.get({n!r}, 0)")
    return _Parser(tokens, code).parse()


def compile_expr(text: str) -> tuple[Callable[[Mapping[str, float]], float], list[str]]:
    """(function of the hit-count mapping, names referenced)."""
    tokens = tokenize(text)
    source = to_python(tokens)
    fn = eval(compile(f"lambda h: {source}", "<meta>", "eval"),  # noqa: S307 - own tokens only
              {"__builtins__": {}, "_div": _div})
    return fn, names(tokens)


def evaluate_constant(text: str) -> float:
    """Value of an expression without names (used by ``if`` lines)."""
    tokens = tokenize(text)
    if names(tokens):
        raise ExprError(f"unknown name {names(tokens)[0]!r}")
    source = to_python(tokens)
    return eval(compile(source, "<if>", "eval"),  # noqa: S307 - own tokens only
                {"__builtins__": {}, "_div": _div})

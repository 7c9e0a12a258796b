"""SPF record syntax (RFC 7208 sections 4.6, 5, 6, 7): terms and macro strings.

Parsing checks the whole record up front: any syntax error anywhere makes the record a
``permerror`` (section 4.6), whether or not evaluation would have reached that term.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
DNS_TERMS = ("include", "a", "mx", "ptr", "exists")  # redirect counts too
MACRO_LETTERS = "slodiphcrtv"
EXP_ONLY_LETTERS = "crt"
DELIMITERS = ".-+,/_="

_VERSION = re.compile(r"^v=spf1(?: |$)", re.IGNORECASE)
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$", re.DOTALL)
_MECHANISM = re.compile(r"^([+\-~?]?)([A-Za-z][A-Za-z0-9_.-]*)(.*)$", re.DOTALL)
_DUAL_CIDR = re.compile(r"(?:/(0|[1-9]\d{0,1}))?(?://(0|[1-9]\d{0,2}))?$")
_TOPLABEL = re.compile(
    r"\.(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])\.?$")
_MACRO = re.compile(r"%\{([A-Za-z])(\d*)(r?)([.\-+,/_=]*)\}", re.IGNORECASE)


class SpfSyntaxError(ValueError):
    """The record (or a macro in it) is malformed: check_host() returns permerror."""


@dataclass(frozen=True, slots=True)
class Macro:
    """``%{letter digits r delimiters}``; an uppercase letter means URL-escape."""

    letter: str
    digits: int | None
    reverse: bool
    delimiters: str
    escape: bool


MacroString = tuple[str | Macro, ...]


@dataclass(frozen=True, slots=True)
class Mechanism:
    """One directive: qualifier, mechanism name, its domain-spec and CIDR lengths."""

    qualifier: str
    name: str
    domain: MacroString | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    cidr4: int = 32
    cidr6: int = 128

    def text(self) -> str:
        """A short description for logs and Authentication-Results comments."""
        q = "" if self.qualifier == "+" else self.qualifier
        if self.network is not None:
            return f"{q}{self.name}:{self.network}"
        spec = macro_text(self.domain) if self.domain else ""
        return f"{q}{self.name}{':' + spec if spec else ''}"


@dataclass(frozen=True, slots=True)
class Record:
    """A parsed ``v=spf1`` record."""

    mechanisms: tuple[Mechanism, ...]
    redirect: MacroString | None = None
    exp: MacroString | None = None


def is_spf(text: str) -> bool:
    """Does this TXT string select itself as an SPF record (section 4.5)?"""
    return bool(_VERSION.match(text))


def parse_record(text: str) -> Record:
    """Parse a record starting with ``v=spf1``; SpfSyntaxError on any error."""
    if not is_spf(text):
        raise SpfSyntaxError("not an SPF record")
    mechanisms: list[Mechanism] = []
    modifiers: dict[str, MacroString] = {}
    # terms are separated by SP only (section 4.6.1): a tab, CR or LF is part of a
    # term, and so a syntax error
    for term in filter(None, text.split(" ")[1:]):
        mod = _MODIFIER.match(term)
        if mod:
            name = mod.group(1).lower()
            value = parse_macro_string(mod.group(2))
            if name in ("redirect", "exp"):
                if name in modifiers:
                    raise SpfSyntaxError(f"more than one {name}= modifier")
                check_domain_spec(value, mod.group(2))
                modifiers[name] = value
            continue
        mechanisms.append(_parse_mechanism(term))
    return Record(tuple(mechanisms), modifiers.get("redirect"), modifiers.get("exp"))


def _parse_mechanism(term: str) -> Mechanism:
    m = _MECHANISM.match(term)
    if not m:
        raise SpfSyntaxError(f"bad term {term!r}")
    qualifier, name, rest = m.group(1) or "+", m.group(2).lower(), m.group(3)
    if name not in MECHANISMS:
        raise SpfSyntaxError(f"unknown mechanism {name!r}")
    if name == "all":
        if rest:
            raise SpfSyntaxError(f"'all' takes no argument: {term!r}")
        return Mechanism(qualifier, name)
    if name in ("ip4", "ip6"):
        return _parse_ip(qualifier, name, rest, term)
    cidr4, cidr6 = 32, 128
    if name in ("a", "mx"):
        spec, cidr4, cidr6 = _split_cidr(rest, term)
    else:
        spec = rest
    if not spec:
        if name in ("include", "exists"):
            raise SpfSyntaxError(f"'{name}' needs a domain: {term!r}")
        return Mechanism(qualifier, name, None, None, cidr4, cidr6)
    if not spec.startswith(":") or len(spec) == 1:
        raise SpfSyntaxError(f"bad term {term!r}")
    domain = parse_macro_string(spec[1:])
    check_domain_spec(domain, spec[1:])
    return Mechanism(qualifier, name, domain, None, cidr4, cidr6)


def _split_cidr(rest: str, term: str) -> tuple[str, int, int]:
    """The domain part and the CIDR lengths of an ``a``/``mx`` argument. Only a
    dual-cidr-length at the very end is one: any other ``/`` belongs to the domain-spec
    (a legal character there, section 7.1), which its own check then judges."""
    m = _DUAL_CIDR.search(rest)
    if m is None:  # the pattern is all optional: it always matches, if only empty
        raise SpfSyntaxError(f"bad CIDR length in {term!r}")
    cidr4 = int(m.group(1)) if m.group(1) else 32
    cidr6 = int(m.group(2)) if m.group(2) else 128
    if cidr4 > 32 or cidr6 > 128:
        raise SpfSyntaxError(f"CIDR length out of range in {term!r}")
    return rest[: m.start()], cidr4, cidr6


def _parse_ip(qualifier: str, name: str, rest: str, term: str) -> Mechanism:
    if not rest.startswith(":"):
        raise SpfSyntaxError(f"'{name}' needs an address: {term!r}")
    value = rest[1:]
    addr, slash, length = value.partition("/")
    limit = 32 if name == "ip4" else 128
    if slash and not re.fullmatch(r"0|[1-9]\d{0,2}", length):
        raise SpfSyntaxError(f"bad CIDR length in {term!r}")
    bits = int(length) if slash else limit
    if bits > limit:
        raise SpfSyntaxError(f"CIDR length out of range in {term!r}")
    try:
        ip = (ipaddress.IPv4Address(addr) if name == "ip4"
              else ipaddress.IPv6Address(addr))
    except ValueError:
        raise SpfSyntaxError(f"bad address in {term!r}") from None
    network = ipaddress.ip_network(f"{ip}/{bits}", strict=False)
    return Mechanism(qualifier, name, None, network, bits if name == "ip4" else 32,
                     bits if name == "ip6" else 128)


def parse_macro_string(text: str, explanation: bool = False) -> MacroString:
    """Split a macro-string into literals and :class:`Macro` items (section 7.1).

    ``explanation`` allows spaces and the c, r, t letters (exp= TXT text).
    """
    out: list[str | Macro] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "%":
            if not (0x21 <= ord(ch) <= 0x7E or (explanation and ch == " ")):
                raise SpfSyntaxError(f"bad character {ch!r} in {text!r}")
            literal.append(ch)
            i += 1
            continue
        nxt = text[i + 1: i + 2]
        if nxt in ("%", "_", "-"):
            literal.append({"%": "%", "_": " ", "-": "%20"}[nxt])
            i += 2
            continue
        m = _MACRO.match(text, i)
        if not m or m.group(1).lower() not in MACRO_LETTERS:
            raise SpfSyntaxError(f"bad macro in {text!r}")
        letter = m.group(1)
        if letter.lower() in EXP_ONLY_LETTERS and not explanation:
            raise SpfSyntaxError(f"macro %{{{letter}}} is only allowed in explanations")
        digits = int(m.group(2)) if m.group(2) else None
        if digits == 0:
            raise SpfSyntaxError(f"macro digit transformer 0 in {text!r}")
        if literal:
            out.append("".join(literal))
            literal = []
        out.append(Macro(letter.lower(), digits, bool(m.group(3)), m.group(4) or ".",
                         letter.isupper()))
        i = m.end()
    if literal:
        out.append("".join(literal))
    return tuple(out)


def check_domain_spec(spec: MacroString, text: str) -> None:
    """A domain-spec must end in a macro or in ``.toplabel`` (section 7.1, domain-end)."""
    if spec and isinstance(spec[-1], Macro):
        return
    tail = spec[-1] if spec else ""
    if not isinstance(tail, str) or not _TOPLABEL.search(tail):
        raise SpfSyntaxError(f"bad domain-spec {text!r}")


def macro_text(spec: MacroString | None) -> str:
    """A macro-string back as text (for logs)."""
    parts = []
    for item in spec or ():
        if isinstance(item, Macro):
            letter = item.letter.upper() if item.escape else item.letter
            digits = "" if item.digits is None else str(item.digits)
            delims = "" if item.delimiters == "." else item.delimiters
            parts.append(f"%{{{letter}{digits}{'r' if item.reverse else ''}{delims}}}")
        else:
            parts.append(item.replace("%", "%%"))
    return "".join(parts)

"""Return codes of a DNS blacklist -> symbols, shared by the DNSBL and URIBL checks.

A list entry in the configuration names its zone and how to read answers:

- ``codes``: exact answer address -> symbol (``"127.0.0.2" = "RCVD_IN_SBL"``);
- ``bitmask``: a bit of the answer's last octet -> symbol (``"4" = "URIBL_GREY"``), for
  lists that combine several sub-lists in one answer (URIBL, SURBL);
- ``symbol``: for any listing answer no entry above matched (may be empty);
- ``blocked``: answers that mean "refused" (see :mod:`scanner.dns.blocked`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scanner.dns.blocked import Network, parse_networks, sort_answer
from scanner.errors import ConfigError

_SYMBOL = re.compile(r"^[A-Z][A-Z0-9_]{1,63}$")
_ZONE = re.compile(r"^(?=.{1,200}$)([a-z0-9_-]{1,63}\.)+[a-z0-9-]{1,63}\.?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CodeMap:
    """How to read one list's answers."""

    zone: str
    symbol: str
    codes: Mapping[str, str]
    bitmask: Mapping[int, str]
    blocked: tuple[Network, ...]

    def read(self, addresses: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
        """([(symbol, code), ...], blocked codes) for the A records of one answer."""
        answer = sort_answer(addresses, self.blocked)
        found: list[tuple[str, str]] = []
        for code in answer.listed:
            symbols = self._symbols(code)
            found.extend((s, code) for s in symbols if (s, code) not in found)
        return found, list(answer.blocked)

    def _symbols(self, code: str) -> list[str]:
        if code in self.codes:
            return [self.codes[code]]
        last = int(code.rsplit(".", 1)[1])
        hits = [sym for bit, sym in sorted(self.bitmask.items()) if last & bit]
        if hits:
            return hits
        return [self.symbol] if self.symbol else []

    def symbols(self) -> set[str]:
        return {self.symbol, *self.codes.values(), *self.bitmask.values()} - {""}


def build_codemap(zone: str, symbol: str, codes: Mapping[str, str],
                  bitmask: Mapping[str, str], blocked: Sequence[str], key: str,
                  source: str) -> CodeMap:
    """Validate one list entry; ConfigError naming ``key`` (e.g. ``...lists[0]``)."""
    def bad(field: str, problem: str) -> ConfigError:
        return ConfigError(f"{source}: '{key}.{field}' {problem}")

    if not _ZONE.match(zone or ""):
        raise bad("zone", f"= {zone!r} is not a DNS zone name")
    for sym in [symbol, *codes.values(), *bitmask.values()]:
        if sym and (not isinstance(sym, str) or not _SYMBOL.match(sym)
                    or sym.endswith("_FAIL")):
            raise bad("symbol", f"{sym!r} is not a symbol name: use A-Z, 0-9 and _, "
                      "not ending in _FAIL")
    exact: dict[str, str] = {}
    for code, sym in codes.items():
        try:
            exact[str(ipaddress.IPv4Address(code))] = str(sym)
        except ValueError:
            raise bad("codes", f"key {code!r} is not an IPv4 address") from None
    bits: dict[int, str] = {}
    for bit, sym in bitmask.items():
        if not str(bit).isdigit() or not 0 < int(bit) < 256:
            raise bad("bitmask", f"key {bit!r} is not a number from 1 to 255")
        bits[int(bit)] = str(sym)
    if not (symbol or exact or bits):
        raise bad("symbol", "is empty and there are no codes or bitmask entries")
    try:
        nets = parse_networks(blocked)
    except ValueError as exc:
        raise bad("blocked", f"has a bad network: {exc}") from None
    return CodeMap(zone.strip(".").lower(), symbol, exact, bits, nets)

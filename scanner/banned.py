"""Banned files: rules on part names, declared MIME types and detected types.

Pure functions over the part tree produced by :func:`decoders.unpack.unpack`. The
shipped default is the equivalent of amavis's Debian ``$banned_filename_re``, plus
today's delivery formats:

* double extensions such as ``.pdf.exe``
  (``\\.[^./]*\\.(exe|vbs|pif|scr|bat|cmd|com|cpl|dll)\\.?$``),
* Windows CLSID names (``{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}``),
* MIME types ``application/x-msdownload``, ``application/x-msdos-program``, ``application/hta``,
* anything inside rpm and cpio archives is allowed from here on (amavis allows tar
  too; Windows 11 opens .tar and .tgz in Explorer since 2023 and Gmail refuses
  executables inside them, so here a tar is searched like a zip),
* names ending in ``.exe .vbs .pif .scr .bat .cmd .com .cpl``,
* and, beyond amavis's list, script, shortcut, installer, add-in and disk-image names
  that Outlook and Gmail block too (``.js .wsf .hta .lnk .ps1 .msi .iso .img .vhd
  .xll`` ..., see ``MODERN_DELIVERY``),
* parts whose detected type is ``exe-ms``.

Name rules look at every name a part has: the one its container gives first and the
other names it declares too (:attr:`decoders.part.Part.aliases`), each also as Windows
saves it (trailing dots and spaces dropped), so ``invoice.js.`` is ``invoice.js``.

Rules are tried in order and the first that matches decides (``ban`` or ``allow``), at
any depth. A rule with ``inside`` also matches when an ancestor of the part matches
(that is how "allow anything in an rpm" works). Site and policy rules come from a list
of dicts ``{"match": "name"|"type"|"mime", "regex": "...", "action": "ban"|"allow"}``
and are placed before the defaults, so an allow rule there overrides a default ban.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from scanner.task import Hit

MATCH_KINDS = ("name", "type", "mime")
ACTIONS = ("ban", "allow")
SYMBOL = "BANNED_FILE"


class BannedPart(Protocol):
    """What a rule looks at (satisfied by :class:`decoders.part.Part`)."""

    index: int
    parent: int | None
    name: str | None
    aliases: tuple[str, ...]
    declared_type: str | None
    detected_type: str | None

    def path_string(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Rule:
    """One banned-file rule; ``regex`` is matched case-insensitively with ``search``."""

    match: str
    regex: re.Pattern[str]
    action: str = "ban"
    inside: bool = False

    def describe(self) -> str:
        return f"{self.match}:{self.regex.pattern}"


def rule(match: str, regex: str, action: str = "ban", inside: bool = False) -> Rule:
    """Build a validated rule; raises ValueError on a bad kind, action or regex."""
    if match not in MATCH_KINDS:
        raise ValueError(f"banned rule: match must be one of {MATCH_KINDS}, not {match!r}")
    if action not in ACTIONS:
        raise ValueError(f"banned rule: action must be one of {ACTIONS}, not {action!r}")
    try:
        compiled = re.compile(regex, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"banned rule: bad regex {regex!r}: {exc}") from exc
    return Rule(match, compiled, action, inside)


# Scripts, shortcuts, installers, add-ins and disk images: how malware has reached users
# since amavis's list was written (.js/.wsf/.hta droppers, .lnk shortcuts, .iso/.img/.vhd
# images whose contents escape Windows' Mark of the Web, .xll Excel add-ins). Outlook
# and Gmail refuse all of them as attachments, so legitimate mail rarely carries them.
MODERN_DELIVERY = (r".\.(vbe|js|jse|wsf|wsh|wsc|hta|lnk|ps1|msi|msp|scf|sct|reg|jar|jnlp"
                   r"|chm|iso|img|vhdx?|xll|appx|appxbundle|msix|msixbundle)$")

DEFAULT_RULES: tuple[Rule, ...] = (
    rule("name", r"\.[^./]*\.(exe|vbs|pif|scr|bat|cmd|com|cpl|dll)\.?$"),
    rule("name", r"\{[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\}?$"),
    rule("mime", r"^application/x-msdownload$"),
    rule("mime", r"^application/x-msdos-program$"),
    rule("mime", r"^application/hta$"),
    rule("type", r"^(rpm|cpio)$", "allow", inside=True),
    rule("name", r".\.(exe|vbs|pif|scr|bat|cmd|com|cpl)$"),
    rule("name", MODERN_DELIVERY),
    rule("type", r"^(exe-ms|lnk)$"),
)


def rules_from_dicts(items: Iterable[Mapping[str, Any]]) -> list[Rule]:
    """Rules from config dicts (keys: match, regex, action, optional inside)."""
    out = []
    for i, item in enumerate(items):
        unknown = set(item) - {"match", "regex", "action", "inside"}
        if unknown:
            raise ValueError(f"banned rule #{i + 1}: unknown keys {sorted(unknown)}")
        if "match" not in item or "regex" not in item:
            raise ValueError(f"banned rule #{i + 1}: needs 'match' and 'regex'")
        out.append(
            rule(
                str(item["match"]),
                str(item["regex"]),
                str(item.get("action", "ban")),
                bool(item.get("inside", False)),
            )
        )
    return out


def build_rules(
    extra: Iterable[Mapping[str, Any]] = (), replace_defaults: bool = False
) -> tuple[Rule, ...]:
    """Policy rules first, then (unless replaced) the shipped defaults."""
    own = rules_from_dicts(extra)
    return tuple(own) if replace_defaults else (*own, *DEFAULT_RULES)


def windows_name(name: str) -> str:
    """The name Windows saves a file under: trailing dots and spaces are dropped, so
    ``invoice.js.`` and ``invoice.js `` are ``invoice.js``."""
    return name.rstrip(". ")


def part_names(part: BannedPart) -> list[str]:
    """Every name of ``part`` (its name and aliases), each also as Windows saves it."""
    out: list[str] = []
    for name in (part.name, *getattr(part, "aliases", ())):
        if not name:
            continue
        for variant in (name, windows_name(name)):
            if variant and variant not in out:
                out.append(variant)
    return out


def _values(part: BannedPart, kind: str) -> list[str]:
    if kind == "name":
        return part_names(part)
    value = part.declared_type if kind == "mime" else part.detected_type
    return [value] if value else []


def _matches(r: Rule, chain: Sequence[BannedPart]) -> bool:
    candidates = chain if r.inside else chain[:1]
    return any(r.regex.search(value) for p in candidates for value in _values(p, r.match))


def verdict(
    part: BannedPart, ancestors: Sequence[BannedPart], rules: Sequence[Rule]
) -> Rule | None:
    """The first rule matching ``part`` (ancestors count for ``inside`` rules), or None."""
    chain = (part, *ancestors)
    for r in rules:
        if _matches(r, chain):
            return r
    return None


def find_banned(parts: Sequence[BannedPart], rules: Sequence[Rule] | None = None) -> list[Hit]:
    """``BANNED_FILE`` hits for every part whose first matching rule bans it."""
    rules = DEFAULT_RULES if rules is None else rules
    by_index = {p.index: p for p in parts}
    hits = []
    for p in parts:
        ancestors = []
        parent = by_index.get(p.parent) if p.parent is not None else None
        while parent is not None and len(ancestors) < 64:
            ancestors.append(parent)
            parent = by_index.get(parent.parent) if parent.parent is not None else None
        r = verdict(p, ancestors, rules)
        if r is not None and r.action == "ban":
            path = p.path_string()
            hits.append(Hit(SYMBOL, options=(path, r.describe()), part=path))
    return hits

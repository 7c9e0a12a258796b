"""The structure of an ARC chain (RFC 8617 section 5.2, steps 1 to 3), read before any
key is looked up.

The ARC header fields are grouped into sets by their instance (``i=``), not by where
they stand in the header: a relay may reorder header fields, and the ARC-Seal signs the
sets in instance order (section 5.1.1). The chain fails here, with the reason, when:

- a field has no readable instance, or one outside 1 to 50 (section 4.2.1);
- there are more than 50 sets (section 5.2 step 1);
- a set lacks one of its three fields or has one twice (step 3);
- the instances are not 1, 2, ... N without a gap or repetition (step 3);
- the latest ARC-Seal says ``cv=fail`` (step 2), the first one is not ``cv=none`` or a
  later one not ``cv=pass`` (step 3); an ARC-Seal carries ``h=`` (section 4.1.3).

Only then are keys fetched: the latest ARC-Message-Signature's and every ARC-Seal's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scanner.auth.dkim_keys import key_name, tags

MAX_SETS = 50
AAR = b"arc-authentication-results"
AMS = b"arc-message-signature"
SEAL = b"arc-seal"
ARC_FIELDS = (AAR, AMS, SEAL)
_SHOWN = {AAR: "ARC-Authentication-Results", AMS: "ARC-Message-Signature",
          SEAL: "ARC-Seal"}
_AAR_INSTANCE = re.compile(rb"\s*i\s*=\s*([0-9]+)\s*;")
Field = tuple[bytes, bytes]  # (name, value) as dkimpy parses them


@dataclass(frozen=True, slots=True)
class ArcSet:
    """The three header fields of one instance, and the tags of the two signatures."""

    instance: int
    aar: Field
    ams: Field
    seal: Field
    ams_tags: dict[str, str]
    seal_tags: dict[str, str]

    def fields(self) -> list[Field]:
        """The set in the order the ARC-Seal signs it (section 5.1.1)."""
        return [self.aar, self.ams, self.seal]


@dataclass(frozen=True, slots=True)
class Chain:
    """The sets in instance order, or the reason the chain fails as it stands."""

    sets: tuple[ArcSet, ...] = ()
    instances: int = 0  # distinct instance values seen (0: no ARC field at all)
    problem: str = ""

    def key_names(self) -> list[str]:
        """The keys validation needs: the latest AMS's and every ARC-Seal's."""
        if not self.sets:
            return []
        signing = [self.sets[-1].ams_tags, *(s.seal_tags for s in self.sets)]
        return [key_name(t["s"], t["d"]) for t in signing if t.get("s") and t.get("d")]


def parse_chain(headers: list[Field]) -> Chain:
    """The ARC chain of a header section (dkimpy's parse of it)."""
    fields = [(n, v) for n, v in headers if n.lower() in ARC_FIELDS]
    if not fields:
        return Chain()
    by_instance: dict[int, dict[bytes, list[Field]]] = {}
    for name, value in fields:
        instance = _instance(name.lower(), value)
        if instance is None:
            return Chain(instances=len(by_instance) or 1,
                         problem=f"{_SHOWN[name.lower()]} without a valid instance (i=)")
        by_instance.setdefault(instance, {}).setdefault(name.lower(), []).append((name, value))
    count = len(by_instance)
    problem = _structure_problem(by_instance)
    if problem:
        return Chain(instances=count, problem=problem)
    sets = tuple(_arc_set(i, by_instance[i]) for i in sorted(by_instance))
    return Chain(sets, count, _seal_problem(sets))


def _instance(name: bytes, value: bytes) -> int | None:
    if name == AAR:
        found = _AAR_INSTANCE.match(value)
        text = found.group(1).decode("ascii") if found else ""
    else:
        parsed = tags(value)
        text = (parsed or {}).get("i", "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 3:
        return None
    return int(text)


def _structure_problem(by_instance: dict[int, dict[bytes, list[Field]]]) -> str:
    if len(by_instance) > MAX_SETS:
        return f"{len(by_instance)} ARC sets, more than {MAX_SETS}"
    outside = [i for i in by_instance if not 1 <= i <= MAX_SETS]
    if outside:
        return f"ARC instance i={min(outside)} is outside 1 to {MAX_SETS}"
    for instance in sorted(by_instance):
        found = by_instance[instance]
        for name in ARC_FIELDS:
            count = len(found.get(name, []))
            if count == 0:
                return f"ARC set i={instance} lacks its {_SHOWN[name]}"
            if count > 1:
                return f"ARC set i={instance} has {count} {_SHOWN[name]} fields"
    if sorted(by_instance) != list(range(1, len(by_instance) + 1)):
        numbers = ", ".join(str(i) for i in sorted(by_instance))
        return f"ARC sets are not numbered from 1 without a gap (i={numbers})"
    return ""


def _arc_set(instance: int, found: dict[bytes, list[Field]]) -> ArcSet:
    ams, seal = found[AMS][0], found[SEAL][0]
    return ArcSet(instance, found[AAR][0], ams, seal, tags(ams[1]) or {}, tags(seal[1]) or {})


def _seal_problem(sets: tuple[ArcSet, ...]) -> str:
    if sets[-1].seal_tags.get("cv", "").strip().lower() == "fail":
        return f"the latest ARC-Seal (i={sets[-1].instance}) says cv=fail"
    for s in sets:
        cv = s.seal_tags.get("cv", "").strip().lower()
        wanted = "none" if s.instance == 1 else "pass"
        if cv != wanted:
            return f"ARC-Seal i={s.instance} says cv={cv or '(missing)'}, not cv={wanted}"
        if "h" in s.seal_tags:
            return f"ARC-Seal i={s.instance} carries h=, which a seal must not"
    return ""

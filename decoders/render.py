"""Human and machine renderings of a part tree: ``tree_text()`` and ``parts_json()``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from decoders.part import Part


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def tree_text(parts: Sequence[Part]) -> str:
    """An indented tree, one line per part: label, types, name, size, flags."""
    lines = []
    for p in parts:
        indent = "  " * (p.depth - 1)
        bits = [p.label(), f"T={p.detected_type or '?'}"]
        if p.declared_type:
            bits.append(f"M={p.declared_type}")
        if p.name:
            bits.append(f"N={p.name!r}")
        bits.extend(f"alias={a!r}" for a in p.aliases)
        bits.append(_size(p.size))
        if p.flags:
            bits.append("[" + ",".join(sorted(p.flags)) + "]")
        lines.append(indent + " ".join(bits))
    return "\n".join(lines) + ("\n" if lines else "")


def parts_json(parts: Sequence[Part]) -> list[dict[str, Any]]:
    """JSON-ready dicts: path, declared and detected type, name and aliases, size, sha256, flags."""
    return [
        {
            "path": p.path_string(),
            "index": p.index,
            "level": list(p.level),
            "parent": p.parent,
            "declared_type": p.declared_type,
            "detected_type": p.detected_type,
            "magic": p.magic,
            "name": p.name,
            "aliases": list(p.aliases),
            "size": p.size,
            "sha256": p.sha256,
            "flags": sorted(p.flags),
            "leaf": p.is_leaf,
        }
        for p in parts
    ]

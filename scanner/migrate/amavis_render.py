"""``from-amavis`` output: the converted settings as TOML, then the notes as comments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scanner.config import _toml_value

if TYPE_CHECKING:
    from scanner.migrate.amavis import Conversion, Note

SECTIONS = ("server", "reinject", "policy", "decode", "quarantine", "sql_log",
            "policy_banks.ORIGINATING", "checks.settings.clamav", "checks.settings.penpals")


def render(conv: Conversion) -> str:
    """The converted configuration as TOML, the notes as comments at the end."""
    lines = ["# scanner configuration converted from amavis (scanner config from-amavis).",
             "# Read, in this order:"]
    lines += [f"#   {f}" for f in conv.files]
    lines += ["# Review it, then run `scanner config check FILE`. Settings amavis had that",
              "# are not converted are listed at the end.", ""]
    recipients = [s for s in conv.sections if s.startswith("policy.recipients.")]
    for section in (*SECTIONS, *recipients):
        values = conv.sections.get(section)
        if not values:
            continue
        lines.append(f"[{section}]")
        for key, (value, origin) in values.items():
            lines.append(f"{key} = {_toml_value(value)}  # {origin}")
        lines.append("")
    if conv.listeners:
        lines.append(f"# listeners from {conv.listener_origin}")
        for listener in conv.listeners:
            lines.append("[[listeners]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in listener.items()]
            lines.append("")
    lines += _render_notes(conv.notes)
    return "\n".join(lines).rstrip("\n") + "\n"


def _render_notes(notes: list[Note]) -> list[str]:
    if not notes:
        return ["# Every amavis setting found was converted."]
    lines = [f"# Not converted ({len(notes)}):"]
    by_reason: dict[str, list[Note]] = {}
    for note in notes:
        by_reason.setdefault(note.reason, []).append(note)
    for reason, group in by_reason.items():
        lines.append("#")
        lines.append(f"# {reason}:")
        for note in group:
            first = " ".join(note.text.split())
            if len(first) > 70:
                first = first[:67] + "..."
            lines.append(f"#   {note.where}: {first}")
    return lines

"""``from-amavis``: the virus scanners, ``@av_scanners`` and ``@av_scanners_backup``.

* ``ClamAV-clamd`` entries of ``@av_scanners``: their sockets become the clamav check's
  ``endpoints``;
* the ``ClamAV-clamscan`` entry of ``@av_scanners_backup`` (Debian's 15-av_scanners has
  it): ``backup_command``, with ``{}`` kept and ``--tempdir=...`` left out (scanner
  gives the command a private ``TMPDIR``). amavis uses an entry only when its program is
  found at start-up (``find_external_programs``), so the entry is converted only when
  clamscan is installed here; otherwise a note says how to turn it on.

Other scanners are not supported; their entries stay in the notes.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from typing import TYPE_CHECKING

from scanner.migrate.perlconf import Statement

if TYPE_CHECKING:
    from scanner.migrate.amavis import Conversion

_CLAMD_ENTRY = re.compile(
    r"""\[\s*['"]ClamAV-clamd['"]\s*,\s*\\&ask_daemon\s*,\s*\[\s*"[^"]*"\s*,\s*"([^"]+)"\s*\]""")
_CLAMSCAN_ENTRY = re.compile(
    r"""\[\s*['"]ClamAV-clamscan['"]\s*,\s*(\[[^\]]*\]|'[^']*'|"[^"]*")\s*,\s*"""
    r"""(?:'([^']*)'|"([^"]*)")""", re.S)
_QUOTED = re.compile(r"""'([^']*)'|"([^"]*)\"""")
_TEMPDIR = re.compile(r"^--tempdir=")
_PLACEHOLDERS = ("{}", "{}/*")
SECTION = "checks.settings.clamav"


def map_av_scanners(last: dict[str, Statement], conv: Conversion, handled: set[str]
                    ) -> None:
    """Convert the ClamAV entries of both scanner lists."""
    _clamd(last, conv, handled)
    _clamscan(last, conv, handled)


def _clamd(last: dict[str, Statement], conv: Conversion, handled: set[str]) -> None:
    statement = last.get("@av_scanners")
    if statement is None:
        return
    sockets = _CLAMD_ENTRY.findall(statement.text)
    if not sockets:
        return  # listed among the notes with its advice
    handled.add("@av_scanners")
    conv.note(statement, "ClamAV-clamd's socket is converted ([checks.settings.clamav] "
                         "endpoints); the other scanners of the list are not supported")
    endpoints = [f"tcp:{s.strip('[]')}" if ":" in s and not s.startswith("/") else f"unix:{s}"
                 for s in sockets]
    conv.set(SECTION, "endpoints", endpoints,
             f"@av_scanners ClamAV-clamd ({statement.where})")


def _clamscan(last: dict[str, Statement], conv: Conversion, handled: set[str]) -> None:
    statement = last.get("@av_scanners_backup")
    if statement is None:
        return
    entry = _CLAMSCAN_ENTRY.search(statement.text)
    if entry is None:
        return  # listed among the notes with its advice
    handled.add("@av_scanners_backup")
    programs = [a or b for a, b in _QUOTED.findall(entry.group(1))]
    program = next((p for p in programs if shutil.which(p)), None)
    argv = backup_argv(entry.group(2) if entry.group(2) is not None else entry.group(3))
    if argv is None:
        conv.note(statement, "ClamAV-clamscan's arguments are not converted (no {} or a "
                             "Perl variable in them): set [checks.settings.clamav] "
                             "backup_command yourself (README \"ClamAV\")")
    elif program is None:
        conv.note(statement, f"ClamAV-clamscan: {' or '.join(programs)} is not installed "
                             "here, so amavis did not use it; to have it: apt-get install "
                             f"clamav and backup_command = {json.dumps(['clamscan', *argv])}")
    else:
        conv.note(statement, "ClamAV-clamscan is converted ([checks.settings.clamav] "
                             "backup_command); the other backup scanners are not supported")
        conv.set(SECTION, "backup_command", [program, *argv],
                 f"@av_scanners_backup ClamAV-clamscan ({statement.where})")


def backup_argv(args: str) -> list[str] | None:
    """amavis's argument string as a list, without ``--tempdir=...``; None when it has
    no ``{}`` placeholder or still holds a Perl variable."""
    try:
        words = [w for w in shlex.split(args) if not _TEMPDIR.match(w)]
    except ValueError:
        return None
    if not any(w in _PLACEHOLDERS for w in words) or any("$" in w for w in words):
        return None
    return words

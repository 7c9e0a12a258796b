"""``from-amavis``: the archive, the clean-mail quarantine and the by-sender quarantine.

amavis decides where a copy goes from a method (``$archive_quarantine_method``,
``$clean_quarantine_method``; undef = none) and a destination (``$archive_quarantine_to``,
``$clean_quarantine_to``, by default the local names ``archive-quarantine`` and
``clean-quarantine``, which ``%local_delivery_aliases`` turns into ``$QUARANTINEDIR``).
A destination with an ``@`` is a mailbox whatever the method (amavis replaces ``local:``
by ``$notify_method``); ``%a`` keeps the original recipients, which with ``local:``
again means files in ``$QUARANTINEDIR``.

* archive: files -> ``policy.archive_directory``, a mailbox -> ``policy.archive_to``;
* clean quarantine: local files or SQL (amavis's releasable quarantine) ->
  ``"clean"`` in ``policy.quarantine_passed``;
* by-sender spam quarantine: not converted (scanner decides copies per recipient); its
  note (:data:`scanner.migrate.amavis_tables.ADVICE`) says what to use instead.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from scanner.migrate.perlconf import UNREAD, Statement

if TYPE_CHECKING:
    from scanner.migrate.amavis import Conversion

ARCHIVE_DIRECTORY = "/var/lib/scanner/archive"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9.+-]*):(.*)$", re.S)
_MBOX_ALIASES = ("archive-mbox", "recip-quarantine")  # amavis's examples: one mbox file

ARCHIVE_VARS = ("$archive_quarantine_method", "$archive_quarantine_to",
                "@archive_quarantine_to_maps")
CLEAN_VARS = ("$clean_quarantine_method", "$clean_quarantine_to",
              "@clean_quarantine_to_maps")


def map_copies(last: dict[str, Statement], conv: Conversion, handled: set[str]) -> None:
    """Convert amavis's archive and clean-quarantine settings; note the rest."""
    handled.update(t for t in (*ARCHIVE_VARS, *CLEAN_VARS) if t in last)
    _archive(last, conv)
    _clean(last, conv)


def _setting(last: dict[str, Statement], conv: Conversion, target: str,
             default: Any) -> tuple[bool, Any, Statement | None]:
    """(readable, value, statement) of an amavis scalar; its default when unassigned."""
    statement = last.get(target)
    if statement is None:
        return True, default, None
    if statement.value is UNREAD or not (statement.value is None
                                         or isinstance(statement.value, str)):
        why = statement.reason or "not a string"
        conv.note(statement, f"the value could not be read ({why}); write the scanner "
                             "setting by hand")
        return False, None, statement
    return True, statement.value, statement


def _maps_note(last: dict[str, Statement], conv: Conversion, maps: str, key: str) -> None:
    statement = last.get(maps)
    if statement is not None:
        conv.note(statement, f"per-recipient lookups: write [policy.recipients.\"PATTERN\"] "
                             f"{key} for the recipients your tables name (the conversion "
                             "used the scalar setting for everyone)")


def _origin(*statements: Statement | None) -> str:
    return ", ".join(f"{s.target} ({s.where})" for s in statements if s is not None)


def _archive(last: dict[str, Statement], conv: Conversion) -> None:
    ok_m, method, m_st = _setting(last, conv, "$archive_quarantine_method", None)
    ok_t, to, t_st = _setting(last, conv, "$archive_quarantine_to", "archive-quarantine")
    if not (ok_m and ok_t):
        return
    if not method or not to:
        for statement in (m_st, t_st):
            if statement is not None and statement.value:
                conv.note(statement, "amavis archived nothing: $archive_quarantine_method "
                                     "or $archive_quarantine_to is undef or empty")
        return
    scheme_match = _SCHEME.match(method)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    origin = _origin(m_st, t_st)
    if "@" in to and scheme in ("local", "smtp", "lmtp"):
        conv.set("policy", "archive_to", to, f"{origin}: a copy of every message to a mailbox")
    elif scheme == "local" and to not in _MBOX_ALIASES:
        where = scheme_match.group(2) if scheme_match else ""
        quarantinedir = last.get("$QUARANTINEDIR")
        base = quarantinedir.value if quarantinedir is not None and isinstance(
            quarantinedir.value, str) else "$QUARANTINEDIR"
        conv.set("policy", "archive_directory", ARCHIVE_DIRECTORY,
                 f"{origin}: amavis wrote {base}/{where}; scanner writes "
                 "7/archive-MAILID.gz here, outside quarantine.directory")
    elif m_st is not None:  # always: the method is undef unless assigned
        conv.note(m_st, f"an archive by {method!r} to {to!r} has no equivalent: "
                             "scanner archives to files (policy.archive_directory, one "
                             "gzip file per message) or to a mailbox (policy.archive_to)")
        return
    _maps_note(last, conv, "@archive_quarantine_to_maps",
               "archive_directory = \"DIR\" (or \"\") / archive_to")


def _clean(last: dict[str, Statement], conv: Conversion) -> None:
    ok_m, method, m_st = _setting(last, conv, "$clean_quarantine_method", None)
    ok_t, to, t_st = _setting(last, conv, "$clean_quarantine_to", "clean-quarantine")
    if not (ok_m and ok_t):
        return
    if not method or not to:
        for statement in (m_st, t_st):
            if statement is not None and statement.value:
                conv.note(statement, "amavis kept no clean mail: $clean_quarantine_method "
                                     "or $clean_quarantine_to is undef or empty")
        return
    scheme_match = _SCHEME.match(method)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme not in ("local", "sql") or "@" in to or to in _MBOX_ALIASES:
        if m_st is not None:  # always: the method is undef unless assigned
            conv.note(m_st, f"clean mail kept by {method!r} to {to!r}: scanner keeps it "
                             "in its quarantine with policy.quarantine_passed = [\"clean\"] "
                        "(quarantine_to also mails held copies, of every category); "
                        "for a copy of every message see policy.archive_directory")
        return
    conv.set("policy", "quarantine_passed", ["clean"],
             f"{_origin(m_st, t_st)}: passed CLEAN, SPAMMY and OVERSIZED mail is kept in "
             "the quarantine (released and expired as any held mail)")
    _maps_note(last, conv, "@clean_quarantine_to_maps", "quarantine_passed = [...]")

"""from-amavis: amavis's notice templates (``$notify_*_templ``, ``read_l10n_templates``).

amavis's macro language (``%s``, ``[? %x |...]``, ``[:mail_id]``) is not converted: each
template setting is noted with the scanner template file that takes its place under
``[notices] templates_dir`` and which variables stand for amavis's macros.
"""

from __future__ import annotations

import re
from typing import Any

from scanner.migrate.perlconf import Statement

MACROS = ("amavis's macros are not converted; rewrite the text in that file with: "
          "%s -> <$sender>, %R -> $recipients, %m -> $message_id, %j -> $subject, "
          "%i or [:mail_id] -> $mail_id, %h -> $hostname, %Q -> $queue_id, "
          "%a or [:client_addr] -> $client_addr, %g -> $client_name, %V -> $virus_names, "
          "%F -> $banned_files, [:banned_parts] -> $banned_parts, %X -> $header_problems, "
          "%c -> $score, "
          "%q -> $quarantine, [? %x |...] -> a line beginning [?x] or [!x]; %n (the log "
          "id), %d (the notice's date) and the header fields of the notice (From, To, "
          "Date, Message-ID) have no variable: scanner writes those itself "
          "(README \"Notice templates\")")
_ADMIN = "admin-virus.txt, admin-banned.txt, admin-unchecked.txt and admin-bad-header.txt"
_RECIPS = "recipient-virus.txt, recipient-banned.txt and recipient-bad-header.txt"
TEMPLATES: dict[str, str] = {
    "$notify_sender_templ": "dsn.txt (the DSN's text part)",
    "$notify_virus_admin_templ": _ADMIN,
    "$notify_spam_admin_templ": "admin-spam.txt",
    "$notify_virus_recips_templ": _RECIPS,
}
NONE: dict[str, str] = {
    "$notify_virus_sender_templ": "scanner sends no virus notice to the sender (amavis's "
    "$warnvirussender, off by default); a bounced message gets the DSN (dsn.txt)",
    "$notify_spam_sender_templ": "scanner sends no spam notice to the sender (amavis's "
    "$warnspamsender, off by default); a bounced message gets the DSN (dsn.txt)",
    "$notify_spam_recips_templ": "scanner never tells recipients about spam",
    "$notify_release_templ": "scanner releases the message itself (amavis's default "
    "$release_format 'resend'), without a notice wrapped around it",
    "$notify_report_templ": "scanner sends no abuse reports",
    "$notify_autoresp_templ": "scanner sends no auto-responses",
}
_FILE = re.compile(r"""read_text\(\s*["']([^"']+)["']""")


def map_notices(last: dict[str, Statement], conv: Any, handled: set[str]) -> None:
    """Note each ``$notify_*_templ`` setting with its scanner template file."""
    for target, statement in last.items():
        if target in TEMPLATES:
            handled.add(target)
            source = _FILE.search(statement.text)
            text = f"the text of {source.group(1)}" if source else "this text"
            conv.note(statement, f"copy {text} into {TEMPLATES[target]} in a directory "
                      f"named by [notices] templates_dir; {MACROS}")
        elif target in NONE:
            handled.add(target)
            conv.note(statement, NONE[target])


def call_note(statement: Statement) -> str | None:
    """The note for Debian's ``read_l10n_templates('en_US', '/etc/amavis')`` (which
    fills the templates from template-*.txt files), or None for another statement."""
    if "read_l10n_templates" not in statement.text:
        return None
    return ("amavis reads its notice templates here (template-dsn.txt -> dsn.txt, "
            f"template-virus-admin.txt -> {_ADMIN}, template-spam-admin.txt -> "
            f"admin-spam.txt, template-virus-recipient.txt -> {_RECIPS}; the sender "
            "templates have no scanner notice). Keep the shipped English texts, or copy "
            "the ones you localised into [notices] templates_dir; " + MACROS)

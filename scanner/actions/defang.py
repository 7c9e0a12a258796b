"""Defanging: a passed copy of dangerous mail wrapped so that it cannot be opened by
accident (amavis's ``$defang_virus``, ``$defang_banned`` ... and its built-in
``attach`` defanger, Amavis/Notify.pm ``defanged_mime_entity``).

The copy becomes a ``multipart/mixed`` message whose header section keeps the
original's trace, address, date, identity and Subject fields (so threading, the
Subject tag and the spam headers still work), whose first part is a plain-text warning
(what was found) and whose second part is the original message, unchanged, as an
attachment (``message/rfc822; x-spam-type=original``, ``message/global`` when the
message has a raw UTF-8 header section and came with SMTPUTF8), preceded by a
``Return-Path`` with the envelope sender.

Only passed copies to local recipients are defanged (amavis: "defanging ... only
applies to incoming mail"), for the categories in ``policy.defang``.
"""

from __future__ import annotations

import secrets
import textwrap

from scanner.config.policy import PolicyConfig
from scanner.headerfields import line_end, named, section_end
from scanner.scores import ScoreTable
from scanner.task import Hit, Verdict, virus_names

KEPT_FIELDS = ("Received", "From", "Sender", "To", "Cc", "Reply-To", "Date", "Message-ID",
               "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Date",
               "Resent-Message-ID", "In-Reply-To", "References", "Subject", "Comments",
               "Keywords", "Organization", "Organisation", "User-Agent", "X-Mailer",
               "DKIM-Signature", "DomainKey-Signature")
"""The original's fields the wrapper keeps (amavis's list)."""
KEYS = {"VIRUS": "virus", "BANNED": "banned", "UNCHECKED": "unchecked", "SPAM": "spam",
        "SPAMMY": "spam", "BAD-HEADER": "bad_header"}
"""Categories -> their ``policy.defang`` names (amavis's %defang_maps_by_ccat)."""
MAX_LINE = 100  # amavis shortens each warning line to 100 characters


def warning_lines(verdict: Verdict, policy: PolicyConfig, scores: ScoreTable,
                  report: str) -> tuple[str, ...]:
    """The warning for a passed copy with ``verdict``, one line per item; () when no
    category of the message is in ``policy.defang``. ``report`` is the spam report
    (SpamAssassin layout) used for spam."""
    wanted = set(policy.defang)
    lines: list[str] = []
    spam_done = False
    for category in verdict.categories or (verdict.category,):
        key = KEYS.get(category)
        if key is None or key not in wanted or (key == "spam" and spam_done):
            continue
        spam_done = spam_done or key == "spam"
        lines += _explain(key, verdict.hits, scores, report)
    return tuple(_short(line) for line in lines)


def _explain(key: str, hits: list[Hit], scores: ScoreTable, report: str) -> list[str]:
    if key == "virus":
        return [f"WARNING: contains virus {', '.join(virus_names(hits))}".rstrip()]
    if key == "banned":
        return ["WARNING: banning rules detected suspect part(s),",
                "do not open unless you know what you are doing"]
    if key == "unchecked":
        limits = [h for h in hits if h.symbol.startswith("DECODE_LIMIT_")]
        if limits:
            what = ", ".join(f"{h.symbol} {' '.join(h.options)}".strip() for h in limits)
            return ["WARNING: NOT CHECKED FOR VIRUSES (mail bomb?):", f"  {what}"]
        return ["WARNING: contains undecipherable part"]
    if key == "bad_header":
        bad = [", ".join(h.options) or scores.get(h.symbol).description for h in hits
               if scores.get(h.symbol).category == "BAD-HEADER"]
        text = "WARNING: bad headers - " + " ".join(bad)
        return textwrap.wrap(text[:1000], 78, subsequent_indent=" ") or [text]
    return report.replace("\r\n\t", "\n").splitlines()


def _short(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def defang(raw: bytes, sender: str, warning: tuple[str, ...], smtputf8: bool) -> bytes:
    """``raw`` wrapped: the kept header fields, the warning, the original attached."""
    eol = line_end(raw)
    head_end = section_end(raw)
    boundary = _boundary(raw)
    kept = b"".join(_ended(raw[f.start:f.end], eol) for f in named(raw, KEPT_FIELDS))
    eight_bit_head = not raw[:head_end].isascii()
    attached_type = "message/global" if smtputf8 and eight_bit_head else "message/rfc822"
    encoding = "7bit" if raw.isascii() else "8bit"
    note = "\n".join(warning) + "\n"
    note_encoding = "7bit" if note.isascii() else "8bit"
    lines = [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
        "",
        "This message was changed by the mail filter: the original is attached.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=UTF-8",
        f"Content-Transfer-Encoding: {note_encoding}",
        "",
        *note.splitlines(),
        "",
        f"--{boundary}",
        f"Content-Type: {attached_type}; x-spam-type=original",
        "Content-Description: Original message",
        'Content-Disposition: attachment; filename="message"',
        f"Content-Transfer-Encoding: {encoding}",
        "",
        f"Return-Path: <{sender}>",
    ]
    body = raw if raw.endswith(b"\n") else raw + eol
    # the line end before a delimiter belongs to it (RFC 2046 5.1.1): one more keeps the
    # original's own last line end inside the attachment
    return (kept + eol.join(s.encode("utf-8") for s in lines) + eol + body + eol
            + f"--{boundary}--".encode() + eol)


def _ended(field: bytes, eol: bytes) -> bytes:
    """A kept field ending as the message's lines end (the last field of a section may
    have none)."""
    return field if field.endswith(b"\n") else field + eol


def _boundary(raw: bytes) -> str:
    """A boundary no line of the original starts with."""
    while True:
        token = f"----=_scanner_defang_{secrets.token_hex(12)}"
        if token.encode() not in raw:
            return token

"""Recognise a bounce and read the header section of the message it returns.

amavis's ``inspect_a_bounce_message`` (Amavis.pm 2.13), for the bounce killer of the pen
pals check: a delivery status notification (RFC 3464/6533), a disposition notification
(RFC 3798) or a feedback report (RFC 5965) in a ``multipart/report`` (RFC 6522), plus the
non-standard forms amavis knows (a report missing its status part, a status part with
the returned header in ``text/plain``, qmail-style ``multipart/mixed`` failure notices
from MAILER-DAEMON, unstructured notices from MAILER-DAEMON or postmaster). Only the
top entity and its direct children are looked at, as amavis does.

From the part that carries the returned message (or its header section) the fields
From, To, Return-Path, Message-ID, Date, Received, Subject, MIME-Version and
Content-Type are collected. The message counts as a bounce when its structure is a
standard report, or when that header section has a From and at least three of those
fields with a Message-ID (five without one). ``Bounce.message_id`` is then the returned
message's Message-ID (amavis's ``parse_message_id``), ``""`` for a full header section
without one, ``None`` when none could be read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from decoders.mimeparams import preserved_params
from decoders.mimeutil import leading_type
from decoders.part import Part
from scanner.pipeline.parse import parse_message_id

COLLECTED = frozenset({"from", "to", "return-path", "message-id", "date", "received",
                       "subject", "mime-version", "content-type"})
_REPORT_PARTS = frozenset({"message/delivery-status", "message/global-delivery-status",
                           "message/disposition-notification",
                           "message/global-disposition-notification",
                           "message/feedback-report"})
_RETURNED = frozenset({"text/rfc822-headers", "message/rfc822-headers",
                       "message/global-headers", "message/rfc822", "message/global",
                       "message/partial"})
_RETURNED_STRICT = frozenset({"text/rfc822-headers", "message/global-headers",
                              "message/rfc822", "message/global"})
_FIELD = re.compile(r"^([a-zA-Z0-9._-]{1,60})[ \t]*:(.*)\Z", re.DOTALL)
_DAEMON = re.compile(r"^MAILER-DAEMON(?:@|\Z)", re.IGNORECASE)
_DAEMON_OR_POSTMASTER = re.compile(r"^(?:MAILER-DAEMON|postmaster)(?:@|\Z)", re.IGNORECASE)
_YAHOO = re.compile(r"^notify@yahoo", re.IGNORECASE)
_FAILURE_SUBJECT = re.compile(r"\b(?:Delivery Failure Notification|failure notice)\b")
MAX_FIELD = 2000  # octets kept of one field, as amavis
MAX_LINE = 65536


@dataclass(frozen=True, slots=True)
class Bounce:
    """A recognised bounce: its kind (DSN, MDN, ARF or bounce), how it was recognised,
    and the returned message's collected header fields (lower-case names)."""

    kind: str
    structure: str
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def message_id(self) -> str | None:
        return self.fields.get("message-id")


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the recognition reads besides the part tree."""

    sender: str
    author: str
    subject: str
    is_auto: bool


def inspect_bounce(parts: Sequence[Part], env: Envelope) -> Bounce | None:
    """The bounce ``parts`` (the decoders' tree of one message) make, or None."""
    if not parts:
        return None
    top = parts[0]
    ctype = _header(top, "content-type")
    types = [leading_type(ctype) or "text/plain"]
    children = []
    if types[0].startswith("multipart/"):
        children = [p for p in parts if p.parent == top.index]
        types += [(p.declared_type or "text/plain").lower() for p in children]
    report_type = _param(ctype, "report-type")
    found = _structure(types, report_type, env)
    if found is None:
        return None
    structure, kind, index, plaintext, certain = found
    if index == 0:  # an unstructured notice: read its (decoded) body
        source = next((p for p in parts if p.parent == top.index), None)
    else:
        source = [top, *children][index]
    fields, enough = ({}, False) if source is None else _read_fields(source, plaintext)
    if not (certain or enough):
        return None
    return Bounce(kind or "bounce", structure, fields)


def _structure(t: list[str], report_type: str | None, env: Envelope
               ) -> tuple[str, str | None, int | None, bool, bool] | None:
    """(structure, kind, index of the part to read, plain text?, a bounce whatever the
    header says?) as amavis's cases, or None."""
    n = len(t)
    report = t[0] == "multipart/report"
    if (2 <= n <= 4 and report and n > 2 and t[2] in _REPORT_PARTS
            and t[2] == f"message/{report_type}" and n > 3 and t[3] in _RETURNED):
        kind = ("MDN" if "disposition" in t[2] else "ARF" if "feedback" in t[2] else "DSN")
        return f"standard {kind}", kind, n - 1, False, True
    if (n == 5 and report and t[-2] == "message/delivery-status"
            and t[-2] == f"message/{report_type}" and t[-1] in _RETURNED_STRICT):
        return "standard DSN", "DSN", n - 1, False, True
    if (2 <= n <= 4 and report and n > 3 and t[2] == "message/delivery-status"
            and t[2] == f"message/{report_type}" and t[3] == "text/plain"):
        return "nonstandard DSN-plain", "DSN", 3, True, False
    if 3 <= n <= 4 and report and report_type == "delivery-status" and t[-1] in _RETURNED_STRICT:
        return "DSN, missing delivery-status part", "DSN", n - 1, False, True
    if (3 <= n <= 5 and t[0] == "multipart/mixed"
            and (t[-1] in _RETURNED_STRICT or t[-1] == "message/rfc822-headers")
            and (_DAEMON.match(env.author) or _FAILURE_SUBJECT.search(env.subject))):
        return "multipart/mixed", None, n - 1, False, False
    if (env.is_auto and not env.sender and _YAHOO.match(env.author) and 3 <= n <= 5
            and t[0] == "multipart/mixed" and t[-1] in _RETURNED_STRICT):
        return "multipart/mixed(yahoogroups)", None, n - 1, False, False
    if (env.is_auto and not env.sender and n == 1 and not report
            and _DAEMON_OR_POSTMASTER.match(env.author)):
        return "nonstructured", None, 0, True, False
    return None


def _read_fields(part: Part, plaintext: bool) -> tuple[dict[str, str], bool]:
    """The collected fields of the header section in ``part`` and whether there are
    enough of them for a bounce (amavis's line-by-line reader)."""
    limit = 200 if plaintext else 1000
    with part.open() as stream:  # a returned message can be large: read what is needed
        lines = [stream.readline(MAX_LINE) for _ in range(limit)]
    fields: dict[str, str] = {}
    have = nonheader = 0
    current: str | None = None
    for raw in [*lines, b""]:
        line = raw.rstrip(b"\r\n").decode("utf-8", "replace") + "\n"
        if line[0] in " \t":
            if current is not None and len(current) < MAX_FIELD:
                current += line
            continue
        if current is not None:
            text = re.sub(r"^[> ]+", "", current) if plaintext else current
            m = _FIELD.match(text)
            if m is None:
                nonheader += 1
            elif m.group(1).lower() in COLLECTED:
                name = m.group(1).lower()
                have += name not in fields
                fields[name] = m.group(2)
        current = line
        if not plaintext:
            if line == "\n" or line.startswith("--"):
                break
        elif not line.strip() or line.startswith("--"):
            if "from" in fields and have >= 4 and nonheader <= 1:
                break
            have = nonheader = 0
            fields, current = {}, None
    enough = "from" in fields and have >= (3 if "message-id" in fields else 5)
    for name, value in fields.items():
        fields[name] = re.sub(r"\n(?=[ \t])", "", value).strip(" \t").rstrip(" \t\n")
    if "message-id" in fields:
        fields["message-id"] = parse_message_id(fields["message-id"])
    elif have >= 5 and nonheader <= 1:
        fields["message-id"] = ""
    return fields, enough


def _header(part: Part, name: str) -> str:
    return next((v for k, v in part.headers if k.lower() == name), "")


def _param(value: str, name: str) -> str | None:
    for key, val in preserved_params(value):
        if key.lower() == name and isinstance(val, str):
            return val.strip().strip("\"").strip().lower()
    return None

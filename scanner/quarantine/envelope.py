"""The envelope written in front of each quarantined message, so a file explains itself.

The index holds the envelope (sender, recipients) a release needs; if the index is lost
or corrupt, the files alone would not say whom a message was for. So, as amavis writes
``X-Envelope-From``/``X-Envelope-To`` into its quarantine files, each file starts with
a block of header fields::

    X-Scanner-Quarantine: 1; bytes=211
    Return-Path: <alice@example.org>
    X-Envelope-From: <alice@example.org>
    X-Envelope-To: <bob@example.test>,
     <carol@example.test>
    X-Envelope-To-Blocked: <carol@example.test>
    X-Quarantine-ID: <7vykgLjHGVrk>
    X-Quarantine-Category: SPAM
    X-Quarantine-Stored: 1764979200
    X-Envelope-Params: BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159
    X-Envelope-Rcpt-Params: <bob@example.test> NOTIFY=SUCCESS,FAILURE
     ORCPT=rfc822;bob@example.test

followed by the message exactly as received. ``X-Envelope-To-Blocked`` (amavis's
name) lists the recipients who did not get the message, their copy held (empty: every
recipient's copy went on, the file is a copy kept of delivered mail); files written
before 2026-12-07 lack it, and then who got the message is not known.
``X-Envelope-Params`` holds the ESMTP
parameters of MAIL FROM as received (SIZE left out: it is counted again when the
message goes out), ``X-Envelope-Rcpt-Params`` (one per recipient that had any) those of
its RCPT TO, so a release sends the message as it came in. Files written before these
two fields existed (2026-12-06) have neither: their parameters are unknown.
``bytes`` is the length of the fields after the first line, so the block is removed
exactly (a message that starts with its own ``X-Envelope-To`` keeps it). Files written
before this block existed have none and read as they are. ``scanner quarantine
reindex`` rebuilds index rows from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from scanner.smtp import params as esmtp
from scanner.smtp.params import Param

MARK = b"X-Scanner-Quarantine: 1; bytes="
_FIRST = re.compile(rb"X-Scanner-Quarantine: 1; bytes=(\d{1,7})\r\n")
_FIELD = re.compile(rb"^([A-Za-z-]+): ?(.*?)\r\n(?=\S|\Z)", re.S | re.M)
_ADDR = re.compile(r"<([^<>]*)>")
_RCPT_PARAMS = re.compile(r"^\s*<([^<>]*)>(.*)$", re.S)


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the block says."""

    sender: str
    recipients: list[str]
    mail_id: str
    category: str
    stored_at: float | None
    mail_params: tuple[Param, ...] | None = None
    """MAIL FROM's parameters; None: a file written before they were kept (unknown)."""
    rcpt_params: dict[str, tuple[Param, ...]] = field(default_factory=dict)
    """RCPT TO's parameters by recipient address, for those that had any."""
    held_for: list[str] | None = None
    """The recipients who did not get the message; None: not known (an older file)."""

    def params_of(self, address: str) -> tuple[Param, ...]:
        """The RCPT parameters the original recipient ``address`` came with (its
        domain compared without case); () for anyone else."""
        if address in self.rcpt_params:
            return self.rcpt_params[address]
        wanted = _fold(address)
        return next((p for a, p in self.rcpt_params.items() if _fold(a) == wanted), ())


def wrap(raw: bytes, *, sender: str, recipients: list[str], mail_id: str, category: str,
         stored_at: float, mail_params: Sequence[Param] | None = None,
         rcpt_params: Mapping[str, Sequence[Param]] | None = None,
         held_for: Sequence[str] | None = None) -> bytes:
    """The block, then ``raw``. ``mail_params`` None (not known, e.g. the archive's
    copies): no ``X-Envelope-Params`` field; ``held_for`` None: no
    ``X-Envelope-To-Blocked`` field."""
    rcpts = _address_list(recipients) or "<>"
    blocked = ("" if held_for is None else
               f"X-Envelope-To-Blocked:{' ' if held_for else ''}{_address_list(held_for)}\r\n")
    per_rcpt = "".join(
        f"X-Envelope-Rcpt-Params: <{_safe(r)}> {_render(params)}\r\n"
        for r, params in (rcpt_params or {}).items() if r in recipients and _render(params))
    kept = [(k, v) for k, v in mail_params or () if k.upper() != "SIZE"]
    params = ("" if mail_params is None else
              f"X-Envelope-Params:{' ' if kept else ''}{_render(kept)}\r\n")
    fields = (f"Return-Path: <{_safe(sender)}>\r\n"
              f"X-Envelope-From: <{_safe(sender)}>\r\n"
              f"X-Envelope-To: {rcpts}\r\n"
              f"{blocked}"
              f"X-Quarantine-ID: <{mail_id}>\r\n"
              f"X-Quarantine-Category: {_safe(category)}\r\n"
              f"X-Quarantine-Stored: {int(stored_at)}\r\n"
              f"{params}{per_rcpt}").encode("utf-8", "surrogateescape")
    return MARK + str(len(fields)).encode() + b"\r\n" + fields + raw


def amavis_text(data: bytes) -> bytes:
    """A stored file's bytes as amavis stores held mail (its SQL quarantine's text):
    only amavis's fields in front (Return-Path, X-Envelope-From, X-Envelope-To,
    X-Envelope-To-Blocked, X-Quarantine-ID), then the message; ``data`` as it is when
    it has no block."""
    env, raw = split(data)
    if env is None:
        return data
    blocked = ("" if env.held_for is None else f"X-Envelope-To-Blocked:"
               f"{' ' if env.held_for else ''}{_address_list(env.held_for)}\r\n")
    return (f"Return-Path: <{_safe(env.sender)}>\r\n"
            f"X-Envelope-From: <{_safe(env.sender)}>\r\n"
            f"X-Envelope-To: {_address_list(env.recipients) or '<>'}\r\n{blocked}"
            f"X-Quarantine-ID: <{env.mail_id}>\r\n").encode("utf-8", "surrogateescape") + raw


def _address_list(addresses: Sequence[str]) -> str:
    """``<a>,`` CRLF `` <b>``: one address a line, as the envelope fields fold them."""
    return ",\r\n ".join(f"<{_safe(a)}>" for a in addresses)


def split(data: bytes) -> tuple[Envelope | None, bytes]:
    """(the envelope, the message) of a stored file; (None, data) without a block."""
    m = _FIRST.match(data)
    if m is None:
        return None, data
    end = m.end() + int(m.group(1))
    if end > len(data):
        return None, data  # not ours after all (or cut short): keep every byte
    return _parse(data[m.end():end]), data[end:]


def _parse(block: bytes) -> Envelope:
    found = [(name.decode("ascii").lower(), value.decode("utf-8", "surrogateescape"))
             for name, value in _FIELD.findall(block)]
    fields = dict(found)
    sender = _first_addr(fields.get("x-envelope-from", ""))
    stored = fields.get("x-quarantine-stored", "")
    return Envelope(
        sender=sender,
        recipients=[a for a in _ADDR.findall(fields.get("x-envelope-to", "")) if a],
        mail_id=_first_addr(fields.get("x-quarantine-id", "")),
        category=fields.get("x-quarantine-category", "").strip(),
        stored_at=float(stored) if stored.strip().isdigit() else None,
        mail_params=(_split_params(fields["x-envelope-params"])
                     if "x-envelope-params" in fields else None),
        rcpt_params=dict(_rcpt_params(v) for k, v in found if k == "x-envelope-rcpt-params"),
        held_for=([a for a in _ADDR.findall(fields["x-envelope-to-blocked"]) if a]
                  if "x-envelope-to-blocked" in fields else None),
    )


def _rcpt_params(value: str) -> tuple[str, tuple[Param, ...]]:
    m = _RCPT_PARAMS.match(value)
    return (m.group(1), _split_params(m.group(2))) if m else ("", ())


def _split_params(value: str) -> tuple[Param, ...]:
    """``BODY=8BITMIME SMTPUTF8`` (folded or not) -> ``(("BODY", "8BITMIME"), ("SMTPUTF8",
    None))``; () for a damaged field."""
    try:
        return tuple(esmtp.split_params(value))
    except esmtp.ParamError:
        return ()


def _render(params: Sequence[Param]) -> str:
    """Wire form, folded between parameters; nothing that could end the field."""
    words = [re.sub(r"\s", "", esmtp.render([p])) for p in params]
    return "\r\n ".join(w for w in words if w)


def _fold(address: str) -> str:
    local, at, domain = address.rpartition("@")
    return f"{local}{at}{domain.lower()}"


def _first_addr(value: str) -> str:
    found = _ADDR.findall(value)
    return found[0] if found else ""


def _safe(text: str) -> str:
    """One line, no angle brackets: an address or word fit for a header field."""
    return re.sub(r"[\r\n<>]", "", text)

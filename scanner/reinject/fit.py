"""A message fitted to the extensions the next hop offers, before any command goes out.

- 8BITMIME (RFC 6152 section 3): a message sent with ``BODY=8BITMIME`` whose content
  has 8-bit octets is converted to 7bit (:mod:`.mime7bit`) for a next hop that does
  not offer 8BITMIME, as Postfix's smtp client does; where that is not safe (no MIME
  structure, 8-bit header fields, 8-bit content under a signature, ...) it goes out as
  it is, as Postfix's smtp client sends what it does not convert (logged once per 10
  minutes per next hop; amavis would refuse it with ``550 5.6.3``, which bounces mail
  that real next hops take: Postfix's smtpd accepts 8-bit octets whatever it
  announces). Content with 8-bit octets that the client did not declare 8BITMIME goes
  out as it is too, as Postfix's smtp client sends it.
- SIZE (RFC 1870): content larger than the next hop's advertised limit is refused
  with ``552 5.3.4`` for every recipient before MAIL, as Postfix's smtp client does
  ("message size N exceeds size limit M of server"), instead of being sent whole.
- SMTPUTF8: :mod:`.smtputf8`.
- DSN (RFC 3461 4.1/6.2): without the extension NOTIFY, ORCPT, RET and ENVID are left
  out (the deliver module's parameter lists); that the sender's request is lost there is
  logged (once per 10 minutes per next hop). No "relayed" DSN is sent, as amavis sends
  none: the README says why.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from scanner.reinject import smtputf8
from scanner.reinject.client import SMTPClient, crlf_lines
from scanner.reinject.mime7bit import to_7bit
from scanner.throttle import held_note

if TYPE_CHECKING:
    from scanner.reinject.deliver import NextHop, Outgoing

log = logging.getLogger("scanner")


def fit(client: SMTPClient, hop: NextHop, out: Outgoing) -> tuple[Outgoing, dict[int, str]]:
    """``out`` as it may go to the next hop, and the replies of the recipients it must
    not go to (by position; all of them when the message cannot go at all)."""
    every = range(len(out.recipients))
    out = _fit_8bit(client.supports("8BITMIME"), hop, out)
    refusal = _too_big(client, hop.label, out)
    if refusal is not None:
        return out, dict.fromkeys(every, refusal)
    _note_lost_dsn(client, hop, out)
    return smtputf8.fit(out, client.supports("SMTPUTF8"), hop.label)


def _fit_8bit(offered: bool, hop: NextHop, out: Outgoing) -> Outgoing:
    declared = any(key == "BODY" and (value or "").upper() == "8BITMIME"
                   for key, value in out.mail_params)
    if offered or not declared or out.data.isascii():
        return out
    converted = to_7bit(out.data)
    if converted is None:
        if (held := hop.warnings.due("8bit")) is not None:
            log.warning("next hop %s does not offer 8BITMIME and a message's 8-bit content "
                        "cannot be converted safely (not MIME, 8-bit header fields or "
                        "signed content): sent as it is, as Postfix sends it%s",
                        hop.label, held_note(held, "more messages"))
        return out
    return replace(out, data=crlf_lines(converted))


def _too_big(client: SMTPClient, label: str, out: Outgoing) -> str | None:
    """The refusal when the content is larger than the next hop's SIZE limit."""
    value = client.extensions.get("SIZE", "").strip()
    limit = int(value) if client.supports("SIZE") and value.isdigit() else 0
    if limit and len(out.data) > limit:
        return (f"552 5.3.4 from MTA({label}): message size {len(out.data)} exceeds "
                f"size limit {limit} of the next hop")
    return None


def _note_lost_dsn(client: SMTPClient, hop: NextHop, out: Outgoing) -> None:
    if client.supports("DSN"):
        return
    asked = any(key in ("RET", "ENVID") for key, _ in out.mail_params) or any(
        key in ("NOTIFY", "ORCPT") for r in out.recipients for key, _ in r.params)
    if asked and (held := hop.warnings.due("dsn")) is not None:
        log.warning("next hop %s does not offer DSN: NOTIFY/ORCPT/RET/ENVID left out%s",
                    hop.label, held_note(held, "more messages"))

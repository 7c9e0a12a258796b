"""Internationalised addresses towards a next hop that does not offer SMTPUTF8.

RFC 6531 3.5: an SMTPUTF8 client must not send an internationalised message to a
server without the extension; it refuses it or downgrades it. As amavis
(``Amavis::Out::SMTP``) does:

- an address whose local part is ASCII and whose domain is not loses nothing in the
  A-label form of its domain (``user@пример.рф`` -> ``user@xn--e1afmkfd.xn--p1ai``),
  so it goes out that way to a next hop without SMTPUTF8, or when the client did
  not ask for SMTPUTF8 (a recipient with an ORCPT naming it as it was written);
- a message that asked for SMTPUTF8 and still has a UTF-8 local part is refused:
  ``550 5.6.7`` for every recipient when it is the sender's, ``553 5.6.7`` for each
  such recipient (the others are delivered, without the SMTPUTF8 parameter). The
  5.6.7 status is the one Postfix's own smtp client gives for the same case
  ("SMTPUTF8 is required, but was not offered by host");
- UTF-8 in the header section alone does not stop it (amavis "doesn't care for an
  8bit header").

Before this, such a message went out with its UTF-8 addresses and without the
SMTPUTF8 parameter; a Postfix with ``smtputf8_enable = no`` took it and lost the
request, sending UTF-8 envelopes on to servers that never offered SMTPUTF8.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from scanner.idn import to_ascii
from scanner.smtp import xtext
from scanner.task import Recipient

if TYPE_CHECKING:
    from scanner.reinject.deliver import Outgoing


def ace_address(address: str) -> str:
    """``address`` with its domain in A-label form when only the domain is non-ASCII
    (and is a valid IDN); otherwise unchanged."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii() or not local.isascii():
        return address
    return f"{local}@{to_ascii(domain) or domain}"


def _ace_recipient(rcpt: Recipient) -> Recipient:
    """``rcpt`` with its domain in A-label form (when :func:`ace_address` changes it),
    and, unless it has one, an ORCPT keeping the address as it was, as amavis does (a
    DSN from further on then names the recipient the sender wrote)."""
    address = ace_address(rcpt.address)
    if address == rcpt.address:
        return rcpt
    params = rcpt.params
    if not any(key == "ORCPT" for key, _ in params):
        params = (*params, ("ORCPT", "utf-8;" + xtext.encode_utf8_addr(rcpt.address)))
    return Recipient(address, params)


def fit(out: Outgoing, offered: bool, label: str) -> tuple[Outgoing, dict[int, str]]:
    """``out`` as it may go to a next hop that does (``offered``) or does not offer
    SMTPUTF8, and the replies of the recipients it must not go to (by position)."""
    requested = any(key == "SMTPUTF8" for key, _ in out.mail_params)
    if offered and requested:
        return out, {}
    sender = ace_address(out.sender)
    recipients = [_ace_recipient(r) for r in out.recipients]
    fitted = replace(out, sender=sender, recipients=recipients)
    if not requested:
        return fitted, {}
    if not sender.isascii():
        reply = (f"550 5.6.7 from MTA({label}): SMTPUTF8 is required, but was not "
                 "offered by the next hop: non-ASCII addresses not permitted for sender")
        return fitted, dict.fromkeys(range(len(recipients)), reply)
    return fitted, {i: f"553 5.6.7 from MTA({label}): SMTPUTF8 is required, but was not "
                       "offered by the next hop: non-ASCII addresses not permitted for "
                       "recipient"
                    for i, r in enumerate(recipients) if not r.address.isascii()}

"""Disclaimers on outgoing mail, as amavis adds them (its ``disclaimer`` mangling, done
there by the external altermime; here natively, :mod:`scanner.actions.disclaimer_body`).

A passed copy gets one when its recipient's policy has ``allow_disclaimers`` (set in
the bank of mail from your users: ORIGINATING, MYNETS) and a disclaimer file, when one
of the From, Resent-From, Resent-Sender, Sender addresses or the envelope sender is
local (its policy SQL row's or LDAP entry's ``local``, its recipient table's, else
``local_domains``: ``Task.originator_local``, filled by the policy stage), and, with
``outbound_disclaimers_only``, when the recipient is not
(amavis's conditions, Amavis.pm "disclaimers can only go to mail originating from
internal networks"). As in amavis one body edit is made per copy: a copy that is
defanged (local recipients, dangerous mail) is wrapped and gets no disclaimer.
"""

from __future__ import annotations

import logging

from scanner.actions.disclaimer_body import Untouched, add_disclaimer
from scanner.addresses import parse_addresses
from scanner.config.disclaimer import PLACEHOLDER, read_disclaimer
from scanner.policy.effective import recipient_is_local, sender_is_local
from scanner.policy.lookup import lookup
from scanner.task import Destiny, Task, Verdict

log = logging.getLogger("scanner")

ORIGINATOR_FIELDS = ("From", "Resent-From", "Resent-Sender", "Sender")
"""Where the originator addresses are read, in amavis's order for the option lookup
(the author first); the envelope sender comes last."""


def originators(task: Task) -> list[str]:
    """The From, Resent-From, Resent-Sender and Sender addresses, then the envelope
    sender, each once."""
    msg = task.message
    values = [] if msg is None else [str(v) for name in ORIGINATOR_FIELDS
                                     for v in msg.get_all(name) or ()]
    found = [a for _, a in parse_addresses(values) if "@" in a]
    return list(dict.fromkeys([*found, task.envelope.sender] if task.envelope.sender
                              else found))


def disclaimer_for(task: Task, address: str, verdict: Verdict,
                   defanged: bool) -> tuple[str, ...]:
    """The disclaimer files (text, HTML; '' = none) of the copy to ``address``, or ()
    when it gets none."""
    policy = verdict.policy
    if defanged or verdict.destiny is not Destiny.PASS or not policy.allow_disclaimers \
            or not (policy.disclaimer_text or policy.disclaimer_html):
        return ()
    known = task.originator_local  # the policy stage's answers, sources included
    ours = [a for a in originators(task)
            if (known[a] if a in known else sender_is_local(policy, a))]
    if not ours:
        log.debug("(%s) no disclaimer: sender not local", task.log_id)
        return ()
    if policy.outbound_disclaimers_only and recipient_is_local(policy, address):
        return ()
    option = next((o for a in ours
                   if (o := lookup(policy.disclaimer_options, a)) is not None), "")
    return (policy.disclaimer_text.replace(PLACEHOLDER, option),
            policy.disclaimer_html.replace(PLACEHOLDER, option))


def with_disclaimer(raw: bytes, files: tuple[str, str], log_id: str) -> bytes:
    """``raw`` with the disclaimer of ``files`` added, or as it is (logged) when it
    cannot take one (signed, encrypted, no text part, a charset it is not in)."""
    text = read_disclaimer(files[0]) if files[0] else ""
    html = read_disclaimer(files[1]) if files[1] else ""
    try:
        edited = add_disclaimer(raw, text, html)
    except Untouched as exc:
        log.info("(%s) no disclaimer added: %s", log_id, exc)
        return raw
    log.info("(%s) disclaimer added (%s)", log_id, ", ".join(f for f in files if f))
    return edited

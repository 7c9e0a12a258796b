"""The summary line of a message, in amavis's ``$log_short_templ`` shape.

``Passed CLEAN {RelayedInbound}, [1.2.3.4]:5678 [1.2.3.4] <from> -> <to>, Queue-ID: X,
Message-ID: <id>, mail_id: XXXXXXXXXXXX, Hits: -, size: 123, queued_as: Y, 12 ms``

As amavis, the policy banks in force follow the actions (``{RelayedOutbound},
ORIGINATING [...]``, several joined by ``/``), and ``LOCAL`` precedes a client address
in ``mynetworks``. ``dkim_sd=selector:domain`` lists the valid DKIM signatures the
message came with and ``dkim_new=`` the ones we added (several joined by ``,``).

A message whose recipients had different outcomes gets two lines, as amavis's default
``$log_templ`` writes them: ``Passed ...`` for the recipients the next hop took (its
``%D`` list), then ``Blocked ...`` for the others (``%O``: discarded, rejected, bounced,
deferred); both with the message's category, actions, quarantine, Queue-ID, Message-ID,
mail_id, Hits, size and DKIM fields, ``queued_as`` on the Passed line only. Recipients
who all share an outcome get one line.

A Message-ID longer than ``MESSAGE_ID_MAX`` characters is cut (``...`` marks it): a
sender chooses it, and a line past journald's 48 KiB would be split before its
``mail_id``, ``Hits`` and ``N ms`` fields. Control characters are escaped by the log's
formatter (``scanner.serve.logs``), not here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MESSAGE_ID_MAX = 998  # RFC 5322's line limit


@dataclass(frozen=True, slots=True)
class Summary:
    """Everything the log line reports."""

    log_id: str
    verb: str
    category: str
    actions: list[str]
    client_addr: str | None
    client_port: str | None
    sender: str
    recipients: list[str]
    queue_id: str | None
    message_id: str
    mail_id: str
    hits: str
    size: int
    queued_as: list[str]
    elapsed_ms: int
    quarantine: str | None = None
    policy_banks: tuple[str, ...] = ()
    local: bool = False
    dkim_sd: tuple[str, ...] = ()
    dkim_new: tuple[str, ...] = ()


def render(s: Summary) -> str:
    # as amavis's [?%p|| %p][?%a||[?%l|| LOCAL] [:client_addr_port]][?%e|| \[%e\]]: no
    # client address (no XFORWARD), no client fields; parsers then say "unknown IP"
    fields = ["/".join(s.policy_banks)] if s.policy_banks else []
    if s.client_addr:
        fields += ["LOCAL"] if s.local else []
        fields += [f"[{s.client_addr}]:{s.client_port or 0}", f"[{s.client_addr}]"]
    client = "".join(f"{f} " for f in fields)
    # amavis lists its status names sorted (its counters' keys), then what do_quarantine
    # added: Quarantined, Archived
    last = ("Quarantined", "Archived")
    actions = sorted(a for a in s.actions if a not in last)
    actions += [a for a in last if a in s.actions]
    parts = [
        f"({s.log_id}) {s.verb} {s.category} {{{','.join(actions)}}}",
        f"{client}<{s.sender}> -> " + ",".join(f"<{r}>" for r in s.recipients),
    ]
    if s.quarantine:
        parts.append(f"quarantine: {s.quarantine}")
    # amavis's [? %Q ||, Queue-ID: %Q][? %m ||, Message-ID: %m]: none, no field
    if s.queue_id:
        parts.append(f"Queue-ID: {s.queue_id}")
    if s.message_id:
        parts.append(f"Message-ID: {_cut(s.message_id)}")
    parts += [
        f"mail_id: {s.mail_id}",
        f"Hits: {s.hits}",
        f"size: {s.size}",
    ]
    if s.queued_as:
        parts.append(f"queued_as: {', '.join(s.queued_as)}")
    if s.dkim_sd:
        parts.append(f"dkim_sd={','.join(s.dkim_sd)}")
    if s.dkim_new:
        parts.append(f"dkim_new={','.join(s.dkim_new)}")
    parts.append(f"{s.elapsed_ms} ms")
    return ", ".join(parts)


def render_lines(s: Summary, passed: list[str], blocked: list[str]) -> list[str]:
    """amavis's lines for a message: ``Passed`` with the ``passed`` recipients if there
    are any, then ``Blocked`` with the ``blocked`` ones (no ``queued_as``: amavis's
    Blocked template has none); ``s``'s own verb and recipients are not used."""
    lines = [render(replace(s, verb="Passed", recipients=passed))] if passed else []
    if blocked:
        lines.append(render(replace(s, verb="Blocked", recipients=blocked, queued_as=[])))
    return lines


def _cut(text: str, limit: int = MESSAGE_ID_MAX) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."

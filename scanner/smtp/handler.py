"""The thin adapter between the listener's hooks and the Processor.

It builds a Task from the session and envelope, hands it over, and turns the
per-recipient replies into one reply (SMTP) or one per recipient (LMTP).
"""

from __future__ import annotations

from typing import Any

from scanner.mailid import LogIds, new_mail_id
from scanner.pipeline.processor import Listener, Processor
from scanner.smtp.session import FilterEnvelope, FilterSession
from scanner.task import ClientInfo, Envelope, Recipient, Task

MAX_RECIPIENTS = 1000


class FilterHandler:
    """The listener's hooks (:mod:`scanner.smtp.server`) for one listener."""

    def __init__(self, processor: Processor, listener: Listener, size_limit: int,
                 log_ids: LogIds) -> None:
        self._processor = processor
        self._listener = listener
        self._size_limit = size_limit
        self._log_ids = log_ids

    def handle_EHLO(self, server: Any, session: FilterSession, envelope: Any,
                    hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return ehlo_lines(responses[0], self._size_limit, session.xforward_allowed)

    def handle_RCPT(self, server: Any, session: FilterSession, envelope: FilterEnvelope,
                    address: str, params: list) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Error: too many recipients"
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: FilterSession,
                          envelope: FilterEnvelope) -> str:
        task = self._task(session, envelope)
        replies = await self._processor.handle(task, self._listener)
        if self._listener.protocol == "LMTP":
            return "\r\n".join(replies)
        return aggregate(replies)

    def _task(self, session: FilterSession, envelope: FilterEnvelope) -> Task:
        xf = session.xforward
        client = ClientInfo(addr=xf.get("ADDR"), name=xf.get("NAME"), port=xf.get("PORT"),
                            helo=xf.get("HELO"), proto=xf.get("PROTO"), ident=xf.get("IDENT"),
                            source=xf.get("SOURCE"))
        params = dict(envelope.mail_params)
        env = Envelope(
            sender="" if envelope.mail_from == "<>" else str(envelope.mail_from),
            recipients=tuple(Recipient(a, tuple(p))
                             for a, p in zip(envelope.rcpt_tos, envelope.rcpt_params,
                                             strict=True)),
            mail_params=tuple(envelope.mail_params),
            smtputf8="SMTPUTF8" in params,
            body_8bit=(params.get("BODY") or "").upper() == "8BITMIME",
        )
        return Task(mail_id=new_mail_id(), envelope=env, raw=bytes(envelope.original_content),
                    client=client, policy_bank=self._listener.policy_bank,
                    listener=str(self._listener.port), peer=session.peer,
                    helo=session.host_name, log_id=self._log_ids.next())


def ehlo_lines(first: str, size_limit: int, xforward_allowed: bool) -> list[str]:
    """The EHLO/LHLO reply: ``first`` (``250-hostname``), then the extensions we offer
    (XFORWARD only to the hosts allowed to send it)."""
    keywords = ["PIPELINING", f"SIZE {size_limit}", "8BITMIME", "SMTPUTF8",
                "ENHANCEDSTATUSCODES", "DSN"]
    if xforward_allowed:
        keywords.append("XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE")
    lines = [first] + [f"250-{k}" for k in keywords]
    lines[-1] = "250 " + lines[-1][4:]
    return lines


def aggregate(replies: list[str]) -> str:
    """One SMTP reply for all recipients: any 4xx wins, then 2xx, then the 5xx."""
    temp = [r for r in replies if r.startswith("4")]
    if temp:
        return temp[0]
    ok = [r for r in replies if r.startswith("2")]
    if ok:
        return ok[0]
    return replies[0]

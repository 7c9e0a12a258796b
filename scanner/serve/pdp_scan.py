"""``request=AM.PDP`` on the AM.PDP socket: scan a message for amavisd-milter.

The milter writes the message to a file and sends its envelope and client data
(``sender``, ``recipient``..., ``mail_file`` or ``tempdir``, ``queue_id``,
``protocol_name``, ``helo_name``, ``client_address``, ``client_name``, ``client_port``,
``policy_bank=A,B``, ``delivery_care_of``, ``tempdir_removed_by``). The message goes
through the worker's own :class:`~scanner.pipeline.processor.Processor` (parse, unpack,
checks, policy, quarantine, DSNs, notices, the summary log line) as over SMTP; the
answer is amavis's (``Amavis::In::AMPDP``):

* ``delivery_care_of=client`` (amavisd-milter's default): nothing is reinjected; the
  passed recipients' header edits come back as milter operations
  (:mod:`scanner.actions.milter`), ``return_value=continue``; blocked recipients among
  passed ones get ``delrcpt``; every recipient blocked: ``reject`` (5xx, exit_code 69)
  when one is rejected, else ``discard`` (exit_code 99);
* ``delivery_care_of=server``: the SMTP path exactly (reinjection to the next hop), then
  ``discard``: the MTA must not deliver what we delivered;
* any temporary failure (a check, the quarantine, an internal error, the time limit, an
  unreadable file): ``setreply=451 4.5.0 ...``, ``return_value=tempfail``, exit_code 75:
  the SMTP client tries again, nothing passes unscanned.

The files are the client's: removed only with ``tempdir_removed_by=server`` (the mail
file and the then empty directory; amavisd-milter removes its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from scanner.actions.milter import MilterCopy
from scanner.mailid import new_mail_id
from scanner.pipeline.processor import Listener, Processor
from scanner.task import ClientInfo, Envelope, Recipient, Task

log = logging.getLogger("scanner")
Attrs = list[tuple[str, tuple[str, ...]]]
EX_OK, EX_UNAVAILABLE, EX_TEMPFAIL, EX_DISCARD = "0", "69", "75", "99"
_BARE_LF = re.compile(rb"(?<!\r)\n")


class BadRequest(Exception):
    """The request lacks what a scan needs (no recipient, no file, a bad value)."""


class MailFileError(Exception):
    """The message file cannot be read."""


class TooBig(Exception):
    """The message is larger than ``server.max_message_size``."""


@dataclass(frozen=True, slots=True)
class PdpRequest:
    """The attributes of one ``request=AM.PDP`` that matter here."""

    sender: str
    recipients: tuple[str, ...]
    mail_file: str
    tempdir: str
    tempdir_removed_by: str  # "client" unless the request says "server"
    delivery_care_of: str  # "client" (amavis's default) or "server"
    queue_id: str | None
    client: ClientInfo
    policy_banks: tuple[str, ...]


def _first(values: dict[str, list[str]], name: str) -> str:
    return (values.get(name) or [""])[0].strip()


def _unbracket(address: str) -> str:
    address = address.strip()
    return address[1:-1] if address.startswith("<") and address.endswith(">") else address


def _ip(value: str) -> str | None:
    """amavisd-milter writes ``IPv6:`` in front of IPv6 addresses; anything that is no
    address counts as unknown."""
    value = value.strip()
    if value[:5].upper() == "IPV6:":
        value = value[5:]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def parse_request(values: dict[str, list[str]]) -> PdpRequest:
    """The scan request; :class:`BadRequest` names what is missing or wrong."""
    recipients = tuple(_unbracket(r) for r in values.get("recipient", []) if r.strip())
    if not recipients:
        raise BadRequest("incomplete request: no recipient")
    tempdir = _first(values, "tempdir")
    mail_file = _first(values, "mail_file") or (os.path.join(tempdir, "email.txt")
                                                if tempdir else "")
    if not mail_file:
        raise BadRequest("incomplete request: neither mail_file nor tempdir")
    care = _first(values, "delivery_care_of").lower() or "client"
    if care not in ("client", "server"):
        raise BadRequest(f"delivery_care_of={care!r}: client or server expected")
    removed = "server" if _first(values, "tempdir_removed_by").lower() == "server" else "client"
    port = _first(values, "client_port")
    client = ClientInfo(addr=_ip(_first(values, "client_address")),
                        name=_first(values, "client_name") or None,
                        port=port if port.isdigit() else None,
                        helo=_first(values, "helo_name") or None,
                        proto=_first(values, "protocol_name") or None)
    banks = tuple(b.strip() for v in values.get("policy_bank", []) for b in v.split(",")
                  if b.strip())
    return PdpRequest(_unbracket(_first(values, "sender")), recipients, mail_file, tempdir,
                      removed, care, _first(values, "queue_id") or None, client, banks)


def read_mail_file(path: str, limit: int) -> bytes:
    """The message, lines ended with CRLF as on the SMTP wire (amavisd-milter writes
    bare LF). A symbolic link or anything but a plain file is refused, as amavis does."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise MailFileError(f"mail_file {path} is not a plain file")
        if st.st_size > limit:
            raise TooBig(f"{st.st_size} bytes")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise MailFileError(f"mail_file {path} does not exist") from None
    except OSError as exc:
        raise MailFileError(f"cannot read mail_file {path}: {exc.strerror} (the scanner's "
                            "user needs read access to the milter's work directory)") from None
    data = _BARE_LF.sub(b"\r\n", data)
    if len(data) > limit:
        raise TooBig(f"{len(data)} bytes or more")
    return data


def build_task(req: PdpRequest, raw: bytes, log_id: str) -> Task:
    env = Envelope(sender=req.sender,
                   recipients=tuple(Recipient(r) for r in req.recipients))
    return Task(mail_id=new_mail_id(), envelope=env, raw=raw, client=req.client,
                policy_bank=",".join(req.policy_banks), listener="AM.PDP",
                helo=req.client.helo, log_id=log_id, queue_id=req.queue_id)


def _setreply(reply: str) -> tuple[str, tuple[str, ...]]:
    """``451 4.5.0 text`` -> setreply attribute; a missing enhanced code is made up
    from the reply's class."""
    code, _, rest = reply.partition(" ")
    enhanced, _, text = rest.partition(" ")
    if not re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", enhanced):
        enhanced, text = f"{code[:1] or '4'}.0.0", rest
    return "setreply", (code, enhanced, text)


def answer_for(task: Task, replies: Sequence[str], copy: MilterCopy | None) -> Attrs:
    """The AM.PDP answer for the Processor's replies (``copy``: the milter's edits;
    None when we delivered ourselves, delivery_care_of=server)."""
    head: Attrs = [("version_server", ("2",)), ("log_id", (task.log_id,))]
    temp = next((r for r in replies if r.startswith("4")), None)
    if temp is not None or not replies:
        return head + [_setreply(temp or f"451 4.5.0 Error in processing, id={task.log_id}"),
                       ("return_value", ("tempfail",)), ("exit_code", (EX_TEMPFAIL,))]
    if all(r.startswith("5") for r in replies):
        return head + [_setreply(replies[0]), ("return_value", ("reject",)),
                       ("exit_code", (EX_UNAVAILABLE,))]
    kept = [i for i in (copy.passed if copy else []) if replies[i].startswith("2")]
    if not kept:
        return head + [_setreply(replies[0]), ("return_value", ("discard",)),
                       ("exit_code", (EX_DISCARD,))]
    assert copy is not None
    out = head + [_setreply(replies[kept[0]])]
    rcpts = task.envelope.recipients
    out += [("delrcpt", (f"<{r.address}>",)) for i, r in enumerate(rcpts) if i not in kept]
    for old, new in copy.readdressed:
        out += [("delrcpt", (f"<{old}>",)), ("addrcpt", (f"<{new}>",))]
    return out + copy.edits + [("return_value", ("continue",)), ("exit_code", (EX_OK,))]


def _tempfail(log_id: str, why: str) -> Attrs:
    return [("version_server", ("2",)), ("log_id", (log_id,)),
            ("setreply", ("451", "4.5.0", f"Error in processing, id={log_id}, {why}")),
            ("return_value", ("tempfail",)), ("exit_code", (EX_TEMPFAIL,))]


def _too_big(log_id: str) -> Attrs:
    return [("version_server", ("2",)), ("log_id", (log_id,)),
            ("setreply", ("552", "5.3.4", "Message size exceeds fixed limit")),
            ("return_value", ("reject",)), ("exit_code", (EX_UNAVAILABLE,))]


def remove_client_files(req: PdpRequest, log_id: str) -> None:
    """``tempdir_removed_by=server``: the mail file, then its directory if empty."""
    if req.tempdir_removed_by != "server":
        return
    with contextlib.suppress(FileNotFoundError):
        try:
            os.unlink(req.mail_file)
            if req.tempdir:
                os.rmdir(req.tempdir)
        except OSError as exc:
            log.warning("(%s) AM.PDP: tempdir_removed_by=server, but %s stays: %s", log_id,
                        exc.filename, exc.strerror)


class PdpScanner:
    """Answers ``request=AM.PDP`` with the worker's Processor."""

    def __init__(self, processor: Processor, size_limit: int) -> None:
        self._processor = processor
        self._size_limit = size_limit

    async def answer(self, values: dict[str, list[str]], log_id: str) -> Attrs:
        try:
            req = parse_request(values)
        except BadRequest as exc:
            log.warning("(%s) AM.PDP scan refused: %s; tempfail", log_id, exc)
            return _tempfail(log_id, str(exc))
        try:
            raw = await asyncio.to_thread(read_mail_file, req.mail_file, self._size_limit)
        except MailFileError as exc:
            log.error("(%s) AM.PDP: %s; tempfail", log_id, exc)
            return _tempfail(log_id, str(exc))
        except TooBig as exc:
            log.warning("(%s) AM.PDP: mail_file %s is larger than server.max_message_size "
                        "(%d bytes): %s; rejected", log_id, req.mail_file, self._size_limit,
                        exc)
            return _too_big(log_id)
        task = build_task(req, raw, log_id)
        listener = Listener(0, "ESMTP", task.policy_bank)
        copy = MilterCopy() if req.delivery_care_of == "client" else None
        replies = await self._processor.handle(task, listener, deliver=copy)
        answer = answer_for(task, replies, copy)
        if not any(v == ("tempfail",) for k, v in answer if k == "return_value"):
            remove_client_files(req, log_id)
        return answer

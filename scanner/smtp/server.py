"""Our SMTP and LMTP listeners: aiosmtpd's protocol engine with filter-specific commands.

aiosmtpd gives us the state machine, command parsing and timeouts. We override DATA
(read in bulk, see :mod:`scanner.smtp.data`) and what a content filter needs and
aiosmtpd does not do: MAIL/RCPT parameters kept verbatim (aiosmtpd upper-cases them,
which corrupts DSN's case-sensitive ENVID and ORCPT, and refuses every RCPT parameter),
DSN, XFORWARD, PIPELINING/ENHANCEDSTATUSCODES advertising and enhanced codes on every reply.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import re
import time
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from scanner.smtp import params as esmtp
from scanner.smtp import xforward
from scanner.smtp.data import DataState, read_data
from scanner.smtp.replies import with_enhanced
from scanner.streams import buffered

log = logging.getLogger("scanner.smtp")

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PLAIN_ANGLE_ADDR = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*)>")
_FAREWELL = ("221 ", "421 ", "502 5.5.1 Too many unrecognized commands")
"""Replies after which the connection is closed (the last one is aiosmtpd's, to the
fifth unknown command)."""


class FilterSession(Session):
    """An SMTP session plus the XFORWARD attributes Postfix sent for the next mail."""

    def __init__(self, loop: Any) -> None:
        super().__init__(loop)
        self.xforward: dict[str, str | None] = {}
        self.xforward_allowed = False


class FilterEnvelope(Envelope):
    """An envelope whose ESMTP parameters keep their original case."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_params: list[esmtp.Param] = []
        self.rcpt_params: list[list[esmtp.Param]] = []


class FilterSMTP(SMTP):
    """ESMTP listener for Postfix's content_filter transport."""

    protocol_name = "ESMTP"

    def __init__(self, handler: Any, *, max_line_length: int, xforward_networks: tuple,
                 **kwargs: Any) -> None:
        self.line_length_limit = max_line_length
        super().__init__(handler, decode_data=False, enable_SMTPUTF8=True, **kwargs)
        self.command_size_limits = collections.defaultdict(lambda: 4096)
        self._xforward_networks = xforward_networks
        self._in_ehlo = False
        self._held: list[str] = []
        self._scanning = False  # the DATA handler runs: no idle timeout
        self._active = time.monotonic()  # when the client last sent or we last replied
        self._idle_deadline = 0.0  # loop time the idle timer (_idle_check) runs out at

    def data_received(self, data: bytes) -> None:
        self._active = time.monotonic()
        # aiosmtpd restarts its timer at each command only, so server.idle_timeout ran
        # from DATA through the whole body: make it an idle time (no bytes for that long)
        if (self._timeout_handle is not None and self.transport is not None
                and not self._scanning):
            self._reset_timeout()
        super().data_received(data)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Restart the idle time (aiosmtpd calls this at every command, we at every
        read). aiosmtpd cancels and schedules a timer each time, about ten per
        message; here a timer already armed to fire no later than the new deadline
        stays, and when it fires early it re-arms for what is left
        (:meth:`_idle_check`). A cancelled timer (DATA's scan) is armed afresh."""
        loop = self.loop
        deadline = loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is not None and not handle.cancelled() and handle.when() <= deadline:
            return
        if handle is not None:
            handle.cancel()
        self._timeout_handle = loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        deadline = self._idle_deadline
        if self.loop.time() < deadline:  # something was read or sent since it was armed
            self._timeout_handle = self.loop.call_at(deadline, self._idle_check)
            return
        self._timeout_cb()

    def _timeout_cb(self) -> None:
        """server.idle_timeout passed without a byte from the client: say so with 421
        (RFC 5321 3.8, as Postfix's smtpd does; aiosmtpd just closed), and close."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        log.info("%r idle for %g s, closing", getattr(self.session, "peer", None),
                 self._timeout_duration)
        self._write_closing("421 4.4.2 Timeout exceeded, closing connection")

    async def handle_exception(self, error: Exception) -> str:
        """A hook that raised: 451 (Postfix retries), not aiosmtpd's "500 Error: ..."."""
        with contextlib.suppress(Exception):
            log.error("%r SMTP session exception", getattr(self.session, "peer", None),
                      exc_info=error)
        return "451 4.3.0 Error in processing, try again later"

    def _create_session(self) -> FilterSession:
        return FilterSession(self.loop)

    def _create_envelope(self) -> FilterEnvelope:
        return FilterEnvelope()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        session = self.session
        if isinstance(session, FilterSession) and peer:
            session.xforward_allowed = self._peer_allowed(peer[0])

    @property
    def session_task(self) -> asyncio.Task | None:
        """The task serving this connection (aiosmtpd's handler coroutine); it ends
        when the session does (QUIT, timeout, the client gone)."""
        return self._handler_coroutine

    def close_if_idle(self, quiet_for: float = 0.0) -> bool:
        """While the filter stops: outside a transaction (no MAIL yet, or the last one
        answered), reply ``421`` and close (RFC 5321 3.8); return whether it did.
        ``quiet_for``: only when neither side has written for that many seconds (a
        worker making way for a fresh one lets its clients finish their work)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        envelope = self.envelope
        if envelope is not None and envelope.mail_from is not None:
            return False  # a transaction is open: it finishes first
        if quiet_for and time.monotonic() - self._active < quiet_for:
            return False
        self._write_closing("421 4.3.2 Service shutting down, closing transmission channel")
        return True

    async def smtp_LHLO(self, arg: str) -> None:
        await self.wrong_protocol("LHLO", "LMTP")

    # Not advertised, so refused as Postfix's smtpd does without TLS and SASL (aiosmtpd
    # answered 538 and 454, and listed AUTH in HELP: without @syntax it is not listed)
    async def smtp_AUTH(self, arg: str) -> None:
        await self.push("503 5.5.1 Error: authentication not enabled")

    async def smtp_STARTTLS(self, arg: str) -> None:
        await self.push("502 5.5.1 Error: command not implemented")

    async def wrong_protocol(self, command: str, spoken: str) -> None:
        """The client greets in the other protocol: Postfix's transport points at the
        wrong listener. Answer 421 and close, so that Postfix keeps the mail queued; a
        5xx to the greeting makes it bounce every message."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        peer = transport.get_extra_info("peername") or ("?",)
        local = transport.get_extra_info("sockname") or ("?", "?")
        log.warning("client %s greeted with %s, but listener port %s speaks %s: its mail "
                    "stays in the client's queue until the transport matches the listener "
                    "(scanner postfix-config prints it)", peer[0], command, local[1],
                    self.protocol_name)
        self._write_closing(f"421 4.3.5 {command}: this is {self.protocol_name}, not "
                            f"{spoken}; check the Postfix transport, closing connection")

    def _peer_allowed(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self._xforward_networks)

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and not self._in_ehlo:
            status = "\r\n".join(with_enhanced(line) for line in status.split("\r\n"))
        if isinstance(status, str) and not status.isascii():
            # a reply quoting the client's bytes that are not UTF-8 (surrogate escapes,
            # as aiosmtpd decodes them): "?" for each, not an exception in place of it
            status = status.encode("utf-8", "replace").decode("utf-8")
        if (isinstance(status, str) and not status.startswith(_FAREWELL)
                and self._more_commands_waiting()):
            # PIPELINING: the client sent more commands; answer them in one write (but
            # not a reply after which the connection closes: nothing would send them)
            self._held.append(status)
            return
        if self._held:
            status = "\r\n".join([*self._held, status])
            self._held = []
        self._active = time.monotonic()
        await super().push(status)

    def _write_closing(self, reply: str) -> None:
        """Write ``reply`` (after any replies held for PIPELINING) and close."""
        transport = self.transport
        assert transport is not None
        held, self._held = self._held, []
        text = "\r\n".join([*held, reply]) + "\r\n"
        transport.write(text.encode("utf-8", "replace"))
        transport.close()

    def _more_commands_waiting(self) -> bool:
        """A complete command line is already buffered (asyncio StreamReader internals)."""
        return b"\n" in buffered(self._reader) and self.transport is not None

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        syntaxerr = "501 5.5.4 Syntax: MAIL FROM:<address> [SP <mail-parameters>]"
        arg = self._strip_command_keyword("FROM:", arg or "")
        if not arg:
            await self.push(syntaxerr)
            return
        if arg.startswith("<>"):
            address, rest = "<>", arg[2:]
        else:
            address, rest = self._getaddr(arg)
        if address is None:
            await self.push("553 5.1.3 Error: malformed address")
            return
        if not address:
            await self.push(syntaxerr)
            return
        if self.envelope.mail_from:
            await self.push("503 5.5.1 Error: nested MAIL command")
            return
        try:
            params = esmtp.split_params(rest or "")
            esmtp.check_mail_params(params, self.data_size_limit or 2**63, True)
        except esmtp.ParamError as exc:
            await self.push(exc.reply)
            return
        self.envelope.mail_from = address
        self.envelope.mail_params = params
        self.envelope.mail_options = [esmtp.render([p]) for p in params]
        self.envelope.smtp_utf8 = any(k == "SMTPUTF8" for k, _ in params)
        await self.push("250 2.1.0 Ok")

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """``<local@domain> rest``: a fast path for plain addresses, else aiosmtpd's parser."""
        match = _PLAIN_ANGLE_ADDR.match(arg)
        if match:
            rest = arg[match.end():].lstrip(" \t")
            if not rest.startswith("("):  # a comment: let the full parser skip it
                return match.group(1), rest
        try:
            return super()._getaddr(arg)
        except Exception:  # junk the email parser trips over ("<" raises IndexError)
            return None, None  # malformed address: 553

    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if not self.envelope.mail_from:
            await self.push("503 5.5.1 Error: need MAIL command")
            return
        syntaxerr = "501 5.5.4 Syntax: RCPT TO:<address> [SP <mail-parameters>]"
        arg = self._strip_command_keyword("TO:", arg or "")
        if not arg:
            await self.push(syntaxerr)
            return
        address, rest = self._getaddr(arg)
        if address is None:
            await self.push("553 5.1.3 Error: malformed address")
            return
        if not address:
            await self.push(syntaxerr)
            return
        if address == "<>":  # the null path is a sender, never a recipient
            await self.push("501 5.1.3 Bad recipient address syntax")
            return
        try:
            params = esmtp.split_params(rest or "")
            esmtp.check_rcpt_params(params)
        except esmtp.ParamError as exc:
            await self.push(exc.reply)
            return
        status = await self._call_handler_hook("RCPT", address, params)
        if status.startswith("250"):
            self.envelope.rcpt_tos.append(address)
            self.envelope.rcpt_params.append(params)
        await self.push(status)

    async def smtp_XFORWARD(self, arg: str | None) -> None:
        session = self.session
        assert isinstance(session, FilterSession)
        if not session.xforward_allowed:
            await self.push("550 5.7.0 Error: insufficient authorization")
            return
        if self.envelope.mail_from:
            await self.push("503 5.5.1 Error: MAIL transaction in progress")
            return
        try:
            session.xforward.update(xforward.parse(arg))
        except esmtp.ParamError as exc:
            await self.push(exc.reply)
            return
        await self.push("250 2.0.0 Ok")

    async def smtp_RSET(self, arg: str) -> None:
        session = self.session
        if isinstance(session, FilterSession):
            session.xforward = {}
        await super().smtp_RSET(arg)

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA command with the bulk reader of :mod:`scanner.smtp.data`."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        assert envelope is not None
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            state, content = await read_data(self._reader, line_limit=self.line_length_limit,
                                              size_limit=self.data_size_limit)
        except asyncio.CancelledError:
            self._writer.close()  # the connection went away during DATA
            raise
        except asyncio.IncompleteReadError:
            self._writer.close()
            return
        if state is not DataState.OK:
            await self.push(state.value)
            self._set_post_data_state()
            return
        envelope.content = envelope.original_content = content
        if self._timeout_handle is not None:  # scanning is bounded by message_timeout:
            self._timeout_handle.cancel()     # the idle timer must not cut it short
        self._scanning = True
        try:
            status = await self._call_handler_hook("DATA")
        except Exception as exc:  # never aiosmtpd's "500 Error": Postfix would bounce
            status = "\r\n".join([await self.handle_exception(exc)]
                                 * (len(envelope.rcpt_tos) if self.protocol_name == "LMTP"
                                    else 1))
        finally:
            self._scanning = False
            if self.transport is not None:
                self._reset_timeout()
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def _set_post_data_state(self) -> None:
        session = self.session
        if isinstance(session, FilterSession):
            session.xforward = {}
        super()._set_post_data_state()


class FilterLMTP(FilterSMTP):
    """LMTP listener: LHLO instead of EHLO, one DATA reply per recipient."""

    protocol_name = "LMTP"
    show_smtp_greeting = False

    async def smtp_LHLO(self, arg: str) -> None:
        """The LMTP greeting, used instead of HELO/EHLO."""
        if not arg:
            await self.push("501 5.5.4 Syntax: LHLO hostname")
            return
        await FilterSMTP.smtp_EHLO(self, arg)

    async def smtp_HELO(self, arg: str) -> None:
        await self.wrong_protocol("HELO", "SMTP")

    async def check_helo_needed(self, helo: str = "LHLO") -> bool:
        return await super().check_helo_needed("LHLO")

    async def smtp_EHLO(self, arg: str) -> None:
        await self.wrong_protocol("EHLO", "SMTP")

    async def push(self, status: Any) -> None:
        # aiosmtpd answers DATA-phase errors (too long, too big) with one line; LMTP
        # owes one reply per recipient, so repeat such a reply for each of them.
        if (isinstance(status, str) and self._data_phase_error(status)
                and len(self.envelope.rcpt_tos) > 1):
            status = "\r\n".join([status] * len(self.envelope.rcpt_tos))
        await super().push(status)

    def _data_phase_error(self, status: str) -> bool:
        return status.startswith(("552 Error: Too much", "500 Line too long"))

"""Our SMTP and LMTP listeners: an ``asyncio.Protocol`` for Postfix's content filter.

Commands are answered as their bytes arrive, without a task, a stream reader or an
``await`` per command; only the end of DATA (the scan and reinjection) runs as a task.
The replies to a pipelined group go out in one write. Until 2026-12 this was aiosmtpd's
protocol engine with our overrides; the same command set, replies, limits and hooks were
kept (README, "Design decisions": why it no longer is).

What a content filter needs beyond RFC 5321's minimum is here: MAIL/RCPT parameters kept
verbatim (DSN's ENVID and ORCPT are case-sensitive), DSN, XFORWARD (only from configured
networks and outside a transaction), PIPELINING and ENHANCEDSTATUSCODES, enhanced codes
on every reply, line and size limits (5xx, after reading to the end of the line or of
DATA), an idle timeout that answers 421, and LMTP (LHLO, one DATA reply per recipient).

The commands themselves (what each checks, changes and answers) are in
:mod:`scanner.smtp.commands`; this module reads the connection, takes command lines
and DATA, writes the replies, keeps the idle timer and runs the scan.

The handler (``scanner.smtp.handler.FilterHandler``, the test sink's) provides
``handle_EHLO(server, session, envelope, hostname, responses) -> list[str]`` and
``handle_RCPT(server, session, envelope, address, params) -> str``, both plain
functions, and ``async handle_DATA(server, session, envelope) -> str``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from typing import Any

from scanner.smtp.commands import Commands
from scanner.smtp.data import DataReader, DataState
from scanner.smtp.replies import with_enhanced
from scanner.smtp.session import FilterEnvelope, FilterSession

log = logging.getLogger("scanner.smtp")

BOGUS_LIMIT = 5
"""Unknown commands a session may send; the fifth one ends it (502)."""
COMMAND_SIZE_LIMIT = 512
"""Longest command line before EHLO (RFC 5321 4.5.3.1.4)."""
ESMTP_COMMAND_SIZE_LIMIT = 4096
"""Longest command line after EHLO (room for ESMTP parameters)."""


class FilterSMTP(Commands, asyncio.Protocol):
    """ESMTP listener for Postfix's content_filter transport."""

    protocol_name = "ESMTP"
    greeting = "HELO"  # what "503 Error: send ... first" asks for

    def __init__(self, handler: Any, *, max_line_length: int, xforward_networks: tuple,
                 hostname: str, ident: str = "scanner", data_size_limit: int | None = None,
                 timeout: float = 300.0, loop: asyncio.AbstractEventLoop | None = None
                 ) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.event_handler = handler
        self.hostname = hostname
        self.ident = ident
        self.line_length_limit = max_line_length
        self.data_size_limit = data_size_limit
        self._timeout_duration = timeout
        self._xforward_networks = xforward_networks
        self.transport: asyncio.Transport | None = None
        self.session = FilterSession(None)
        self.envelope = FilterEnvelope()
        self._buffer = bytearray()  # received, not yet taken
        self._out: list[str] = []  # replies not yet written
        self._data: DataReader | None = None  # DATA is being read
        self._skipping = False  # an overlong command line is being read past
        self._scan: asyncio.Task | None = None  # the end of DATA (scan and reinjection)
        self._bogus = BOGUS_LIMIT
        self._mail_extra = 0  # MAIL's line may grow by what each EHLO advertised
        self._reading_paused = False
        self._writing_paused = False
        self._closed = self.loop.create_future()
        self._session_task: asyncio.Task | None = None
        self._timeout_handle: asyncio.TimerHandle | None = None
        self._idle_deadline = 0.0  # loop time the idle timer (_idle_check) runs out at
        self._active = time.monotonic()  # when the client last sent or we last replied
        self._commands = {
            "HELO": self.smtp_HELO, "EHLO": self.smtp_EHLO, "LHLO": self.smtp_LHLO,
            "MAIL": self.smtp_MAIL, "RCPT": self.smtp_RCPT, "DATA": self.smtp_DATA,
            "RSET": self.smtp_RSET, "NOOP": self.smtp_NOOP, "QUIT": self.smtp_QUIT,
            "VRFY": self.smtp_VRFY, "EXPN": self.smtp_EXPN, "HELP": self.smtp_HELP,
            "XFORWARD": self.smtp_XFORWARD, "AUTH": self.smtp_AUTH,
            "STARTTLS": self.smtp_STARTTLS,
        }

    # -- the connection --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.session = FilterSession(peer)
        if isinstance(transport.get_extra_info("sockname"), str):
            # a Unix socket listener: who may connect is the socket file's mode and
            # group, so whoever got in is a local process as trusted as loopback
            self.session.xforward_allowed = True
        elif peer:
            self.session.xforward_allowed = self._peer_allowed(peer[0])
        self._session_task = self.loop.create_task(self._session_life())
        self._reset_timeout()
        self._reply(f"220 {self.hostname} {self.ident}")
        self._flush()

    async def _session_life(self) -> None:
        await self._closed

    @property
    def session_task(self) -> asyncio.Task | None:
        """A task that ends when the session does (QUIT, timeout, the client gone); the
        worker counts connections and waits for them through it."""
        return self._session_task

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        if self._scan is not None:
            self._scan.cancel()  # the client is gone: its answer can go nowhere
        self.transport = None
        self._buffer.clear()
        if not self._closed.done():
            self._closed.set_result(None)

    def eof_received(self) -> bool:
        """The client closed its side: end the session (a scan under way is cancelled,
        as after a lost connection)."""
        if self._scan is not None:
            self._scan.cancel()
        return False  # the transport closes itself

    def pause_writing(self) -> None:
        """A client that does not read its replies: stop reading its commands."""
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        pause = self._writing_paused or (
            self._scan is not None and len(self._buffer) > self.line_length_limit)
        if pause and not self._reading_paused:
            transport.pause_reading()
        elif not pause and self._reading_paused:
            transport.resume_reading()
        self._reading_paused = pause

    def data_received(self, data: bytes) -> None:
        self._active = time.monotonic()
        # server.idle_timeout is an idle time: no bytes for that long, also within DATA
        if self._timeout_handle is not None and self._scan is None:
            self._reset_timeout()
        if self._scan is not None or self._buffer:
            self._buffer += data
            if self._scan is not None:
                self._update_reading()
                return
            if self._data is None and b"\n" not in data:
                # more of an unfinished command line: nothing to look at again (a line
                # trickled in byte by byte must not be rescanned at every byte)
                if len(self._buffer) > self.line_length_limit:
                    self._buffer.clear()
                    self._skipping = True
                return
            self._process(None)
        else:
            self._process(data)

    # -- taking commands and DATA ----------------------------------------------------------
    def _process(self, data: bytes | None) -> None:
        """Answer every complete command received (``data``, or the buffer when None);
        read DATA; start the scan at its end; write the replies."""
        if data is None:
            data = bytes(self._buffer)
            self._buffer.clear()
        rest = self._take(data) if data else b""
        if rest:
            self._buffer += rest
        self._flush()

    def _take(self, data: bytes) -> bytes:
        """Work through ``data``; return what is left for later (an incomplete command
        line, or what came after the end of DATA while the scan runs)."""
        pos, size = 0, len(data)
        while pos < size and self._scan is None and not self._closing():
            reader = self._data
            if reader is not None:
                pos += reader.feed(data[pos:] if pos else data)
                if reader.done:
                    self._data = None
                    self._end_of_data(reader)
                continue
            end = data.find(b"\n", pos)
            if self._skipping:  # the rest of an overlong line
                if end < 0:
                    return b""
                self._skipping = False
                pos = end + 1
                self._reply("500 Command line too long")
                continue
            if end < 0:
                if size - pos > self.line_length_limit:  # longer than any line may be
                    self._skipping = True
                    return b""
                break
            start, pos = pos, end + 1
            if end - start > self.line_length_limit:
                self._reply("500 Command line too long")
                continue
            self._command(data[start:pos])
        return data[pos:]

    def _closing(self) -> bool:
        transport = self.transport
        return transport is None or transport.is_closing()

    def _command(self, line: bytes) -> None:
        line = line.rstrip(b"\r\n")
        if not line:
            self._reply("500 Error: bad syntax")
            return
        command_bytes, _, arg_bytes = line.partition(b" ")
        try:
            command = command_bytes.upper().decode("ascii")
        except UnicodeDecodeError:
            self._reply("500 Error: bad syntax")
            return
        # the argument as text; bytes that are not UTF-8 as surrogate escapes, so the
        # original bytes can be had back
        arg = str(arg_bytes.strip(), "utf-8", "surrogateescape") if arg_bytes else None
        if self.session.extended_smtp:
            limit = ESMTP_COMMAND_SIZE_LIMIT + (self._mail_extra if command == "MAIL" else 0)
        else:
            limit = COMMAND_SIZE_LIMIT
        if len(line) > limit:
            self._reply("500 Command line too long")
            return
        method = self._commands.get(command)
        if method is None:
            self._bogus -= 1
            log.info("%r unrecognised command %r", self.session.peer, command[:40])
            if self._bogus < 1:
                self._close_with("502 5.5.1 Too many unrecognized commands, goodbye.")
                return
            self._reply(f'500 Error: command "{command}" not recognized')
            return
        try:
            method(arg)
        except Exception as exc:  # a bug or a hook that raised: 451, Postfix retries
            self._reply(self._exception_reply(exc))

    def _exception_reply(self, error: Exception) -> str:
        with contextlib.suppress(Exception):  # a log line that cannot be written
            log.error("%r SMTP session exception", self.session.peer, exc_info=error)
        return "451 4.3.0 Error in processing, try again later"

    # -- replies ---------------------------------------------------------------------------
    def _reply(self, status: str, *, ehlo: bool = False) -> None:
        """Queue a reply (written with the others of the group, :meth:`_flush`); every
        line gets a default enhanced status code unless it has one (not EHLO's)."""
        if not ehlo:
            status = ("\r\n".join(with_enhanced(line) for line in status.split("\r\n"))
                      if "\r\n" in status else with_enhanced(status))
        if not status.isascii():
            # a reply quoting the client's bytes that are not UTF-8 (surrogate escapes):
            # "?" for each, not an exception in place of it
            status = status.encode("utf-8", "replace").decode("utf-8")
        self._out.append(status)

    def _flush(self) -> None:
        if not self._out:
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            self._out = []
            return
        text = "\r\n".join(self._out) + "\r\n"
        self._out = []
        self._active = time.monotonic()
        transport.write(text.encode("utf-8"))

    def _write_closing(self) -> None:
        """Write the replies so far and close the connection."""
        self._flush()
        transport = self.transport
        if transport is not None:
            transport.close()

    def _close_with(self, reply: str) -> None:
        self._out.append(reply)
        self._write_closing()

    # -- the idle timer --------------------------------------------------------------------
    def _reset_timeout(self, duration: float | None = None) -> None:
        """Restart the idle time (at every read). A timer already armed to fire no later
        than the new deadline stays, and when it fires early it re-arms for what is left
        (:meth:`_idle_check`): one timer per connection, not one per read. A cancelled
        timer (DATA's scan) is armed afresh."""
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
        if self.loop.time() < deadline:  # something was read since it was armed
            self._timeout_handle = self.loop.call_at(deadline, self._idle_check)
            return
        self._timeout_cb()

    def _timeout_cb(self) -> None:
        """server.idle_timeout passed without a byte from the client: say so with 421
        (RFC 5321 3.8, as Postfix's smtpd does), and close."""
        if self._closing():
            return
        log.info("%r idle for %g s, closing", self.session.peer, self._timeout_duration)
        self._close_with("421 4.4.2 Timeout exceeded, closing connection")

    def close_if_idle(self, quiet_for: float = 0.0) -> bool:
        """While the filter stops: outside a transaction (no MAIL yet, or the last one
        answered), reply ``421`` and close (RFC 5321 3.8); return whether it did.
        ``quiet_for``: only when neither side has written for that many seconds (a
        worker making way for a fresh one lets its clients finish their work)."""
        if self._closing():
            return False
        if self.envelope.mail_from is not None or self._scan is not None:
            return False  # a transaction is open: it finishes first
        if quiet_for and time.monotonic() - self._active < quiet_for:
            return False
        self._close_with("421 4.3.2 Service shutting down, closing transmission channel")
        return True

    def _peer_allowed(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self._xforward_networks)

    # -- the end of DATA -------------------------------------------------------------------
    def _end_of_data(self, reader: DataReader) -> None:
        """The end-of-data line arrived: refuse what broke a limit, or scan and relay."""
        if reader.state is not DataState.OK:
            self._reply(self._per_recipient(reader.state.value))
            self._new_transaction()
            return
        envelope = self.envelope
        envelope.content = envelope.original_content = reader.content()
        if self._timeout_handle is not None:  # scanning is bounded by message_timeout:
            self._timeout_handle.cancel()     # the idle timer must not cut it short
        self._flush()  # anything still held (the 354) goes out before the scan
        self._scan = self.loop.create_task(self._run_scan(envelope))

    def _per_recipient(self, reply: str) -> str:
        """SMTP: the reply; LMTP overrides it (one per recipient)."""
        return reply

    async def _run_scan(self, envelope: FilterEnvelope) -> None:
        try:
            status = await self.event_handler.handle_DATA(self, self.session, envelope)
        except Exception as exc:  # never a 5xx for our own failure: Postfix would bounce
            status = self._per_recipient(self._exception_reply(exc))
        self._scan = None
        if self._closing():
            return
        self._reset_timeout()
        self._new_transaction()
        self._reply(status)
        self._update_reading()
        self._process(None)  # commands that came during the scan; writes the replies


class FilterLMTP(FilterSMTP):
    """LMTP listener: LHLO instead of EHLO, one DATA reply per recipient."""

    protocol_name = "LMTP"
    greeting = "LHLO"

    def smtp_LHLO(self, arg: str | None) -> None:
        """The LMTP greeting, used instead of HELO/EHLO."""
        if not arg:
            self._reply("501 5.5.4 Syntax: LHLO hostname")
            return
        FilterSMTP.smtp_EHLO(self, arg)

    def smtp_HELO(self, arg: str | None) -> None:
        self.wrong_protocol("HELO", "SMTP")

    def smtp_EHLO(self, arg: str | None) -> None:
        self.wrong_protocol("EHLO", "SMTP")

    def _per_recipient(self, reply: str) -> str:
        return "\r\n".join([reply] * max(1, len(self.envelope.rcpt_tos)))

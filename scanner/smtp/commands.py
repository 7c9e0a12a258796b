"""The SMTP and LMTP commands of our listener (:mod:`scanner.smtp.server`): what each one
checks, changes and answers.

:class:`Commands` is the listener's half that speaks the protocol; the other half
(:class:`scanner.smtp.server.FilterSMTP`) reads the connection, queues and writes the
replies and runs the scan. The commands only queue replies (``_reply``), so a pipelined
group is answered in one write; DATA switches the connection to reading the message.
The reply texts are aiosmtpd's, whose engine this listener replaced (README, "Design
decisions"), with Postfix's enhanced codes added.
"""

from __future__ import annotations

import asyncio
import logging
import re
from email._header_value_parser import get_addr_spec, get_angle_addr
from typing import Any

from scanner.smtp import params as esmtp
from scanner.smtp import xforward
from scanner.smtp.data import DataReader
from scanner.smtp.session import FilterEnvelope, FilterSession

log = logging.getLogger("scanner.smtp")

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PLAIN_ANGLE_ADDR = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*)>")
_HELP = {
    "DATA": "DATA", "EHLO": "EHLO hostname", "HELO": "HELO hostname",
    "HELP": "HELP [command]", "LHLO": "LHLO hostname", "NOOP": "NOOP [ignored]",
    "QUIT": "QUIT", "RSET": "RSET", "VRFY": "VRFY <address>",
    "MAIL": "MAIL FROM:<address> [SP <mail-parameters>]",
    "RCPT": "RCPT TO:<address> [SP <mail-parameters>]",
    "XFORWARD": "XFORWARD attribute=value...",
}


class Commands:
    """The commands, as methods ``smtp_<COMMAND>(arg)``; mixed into the listener."""

    # provided by the listener (scanner.smtp.server.FilterSMTP)
    protocol_name: str
    greeting: str
    hostname: str
    event_handler: Any
    data_size_limit: int | None
    line_length_limit: int
    transport: asyncio.Transport | None
    session: FilterSession
    envelope: FilterEnvelope
    _commands: dict[str, Any]
    _data: DataReader | None
    _mail_extra: int

    def _reply(self, status: str, *, ehlo: bool = False) -> None:
        raise NotImplementedError

    def _write_closing(self) -> None:
        raise NotImplementedError

    def _close_with(self, reply: str) -> None:
        raise NotImplementedError

    # -- state -----------------------------------------------------------------------------
    def _new_transaction(self) -> None:
        """After DATA, RSET and a greeting: no envelope, no XFORWARD attributes."""
        self.envelope = FilterEnvelope()
        self.session.xforward = {}

    def _helo_needed(self) -> bool:
        if not self.session.host_name:
            self._reply(f"503 Error: send {self.greeting} first")
            return True
        return False

    # -- the commands ----------------------------------------------------------------------
    def smtp_HELO(self, arg: str | None) -> None:
        if not arg:
            self._reply("501 Syntax: HELO hostname")
            return
        self._new_transaction()
        self.session.extended_smtp = False
        self.session.host_name = arg
        self._reply(f"250 {self.hostname}")

    def smtp_EHLO(self, arg: str | None) -> None:
        if not arg:
            self._reply("501 Syntax: EHLO hostname", ehlo=True)
            return
        self._new_transaction()
        self.session.extended_smtp = True
        response = [f"250-{self.hostname}"]
        if self.data_size_limit:
            response.append(f"250-SIZE {self.data_size_limit}")
            self._mail_extra += 26
        response += ["250-8BITMIME", "250-SMTPUTF8", "250 HELP"]
        self._mail_extra += 10
        lines = self.event_handler.handle_EHLO(self, self.session, self.envelope, arg,
                                               response)
        for line in lines:
            self._reply(line, ehlo=True)

    def smtp_LHLO(self, arg: str | None) -> None:
        self.wrong_protocol("LHLO", "LMTP")

    def smtp_NOOP(self, arg: str | None) -> None:
        self._reply("250 OK")

    def smtp_QUIT(self, arg: str | None) -> None:
        if arg:
            self._reply("501 Syntax: QUIT")
            return
        self._reply("221 Bye")
        self._write_closing()

    def smtp_HELP(self, arg: str | None) -> None:
        names = sorted(n for n in self._commands if n in _HELP and self._offered(n))
        if arg:
            name = arg.upper()
            if name in names:
                self._reply(f"250 Syntax: {_HELP[name]}")
                return
        self._reply(f"{501 if arg else 250} Supported commands: {' '.join(names)}")

    def _offered(self, name: str) -> bool:
        if name == "XFORWARD":
            return self.session.xforward_allowed
        return name not in (("HELO", "EHLO") if self.protocol_name == "LMTP" else ("LHLO",))

    def smtp_VRFY(self, arg: str | None) -> None:
        if not arg:
            self._reply("501 Syntax: VRFY <address>")
            return
        address, _ = self._getaddr(arg)
        if address is None:
            self._reply("502 Could not VRFY " + arg)
            return
        self._reply("252 Cannot VRFY user, but will accept message and attempt delivery")

    def smtp_EXPN(self, arg: str | None) -> None:
        self._reply("502 EXPN not implemented")

    # Not advertised, so refused as Postfix's smtpd does without TLS and SASL
    def smtp_AUTH(self, arg: str | None) -> None:
        self._reply("503 5.5.1 Error: authentication not enabled")

    def smtp_STARTTLS(self, arg: str | None) -> None:
        self._reply("502 5.5.1 Error: command not implemented")

    def wrong_protocol(self, command: str, spoken: str) -> None:
        """The client greets in the other protocol: Postfix's transport points at the
        wrong listener. Answer 421 and close, so that Postfix keeps the mail queued; a
        5xx to the greeting makes it bounce every message."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        peer = transport.get_extra_info("peername") or ("?",)
        local = transport.get_extra_info("sockname") or ("?", "?")
        if isinstance(local, str):  # a Unix socket listener: its path
            peer, where = ("local",), f"socket {local}"
        else:
            where = f"port {local[1]}"
        log.warning("client %s greeted with %s, but listener %s speaks %s: its mail "
                    "stays in the client's queue until the transport matches the listener "
                    "(scanner postfix-config prints it)", peer[0], command, where,
                    self.protocol_name)
        self._close_with(f"421 4.3.5 {command}: this is {self.protocol_name}, not "
                         f"{spoken}; check the Postfix transport, closing connection")

    @staticmethod
    def _strip_keyword(keyword: str, arg: str) -> str | None:
        if arg[:len(keyword)].upper() == keyword:
            return arg[len(keyword):].strip()
        return None

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """``<local@domain> rest``: a fast path for plain addresses, else the standard
        library's RFC 5322 address parser (an angle address, or an addr-spec); ``(None,
        None)`` for a malformed one, ``("", "")`` for none."""
        match = _PLAIN_ANGLE_ADDR.match(arg)
        if match:
            rest = arg[match.end():].lstrip(" \t")
            if not rest.startswith("("):  # a comment: let the full parser skip it
                return match.group(1), rest
        return parse_address(arg)

    def _path(self, command: str, keyword: str, arg: str | None) -> tuple[str, str] | None:
        """MAIL's or RCPT's ``KEYWORD<path> parameters``: the address (``<>`` for the
        null path after FROM:) and the rest; None when it was refused here (501, 553)."""
        text = self._strip_keyword(keyword, arg or "")
        if not text:
            self._reply(f"501 5.5.4 Syntax: {_HELP[command]}")
            return None
        if keyword == "FROM:" and text.startswith("<>"):
            return "<>", text[2:]
        address, rest = self._getaddr(text)
        if address is None:
            self._reply("553 5.1.3 Error: malformed address")
            return None
        if not address:
            self._reply(f"501 5.5.4 Syntax: {_HELP[command]}")
            return None
        return address, rest or ""

    def smtp_MAIL(self, arg: str | None) -> None:
        if self._helo_needed():
            return
        path = self._path("MAIL", "FROM:", arg)
        if path is None:
            return
        address, rest = path
        envelope = self.envelope
        if envelope.mail_from:
            self._reply("503 5.5.1 Error: nested MAIL command")
            return
        try:
            params = esmtp.split_params(rest)
            esmtp.check_mail_params(params, self.data_size_limit or 2**63, True)
        except esmtp.ParamError as exc:
            self._reply(exc.reply)
            return
        envelope.mail_from = address
        envelope.mail_params = params
        envelope.mail_options = [esmtp.render([p]) for p in params]
        envelope.smtp_utf8 = any(k == "SMTPUTF8" for k, _ in params)
        self._reply("250 2.1.0 Ok")

    def smtp_RCPT(self, arg: str | None) -> None:
        if self._helo_needed():
            return
        envelope = self.envelope
        if not envelope.mail_from:
            self._reply("503 5.5.1 Error: need MAIL command")
            return
        path = self._path("RCPT", "TO:", arg)
        if path is None:
            return
        address, rest = path
        if address == "<>":  # the null path is a sender, never a recipient
            self._reply("501 5.1.3 Bad recipient address syntax")
            return
        try:
            params = esmtp.split_params(rest)
            esmtp.check_rcpt_params(params)
        except esmtp.ParamError as exc:
            self._reply(exc.reply)
            return
        status = self.event_handler.handle_RCPT(self, self.session, envelope, address, params)
        if status.startswith("250"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_params.append(params)
        self._reply(status)

    def smtp_XFORWARD(self, arg: str | None) -> None:
        session = self.session
        if not session.xforward_allowed:
            self._reply("550 5.7.0 Error: insufficient authorization")
            return
        if self.envelope.mail_from:
            self._reply("503 5.5.1 Error: MAIL transaction in progress")
            return
        try:
            session.xforward.update(xforward.parse(arg))
        except esmtp.ParamError as exc:
            self._reply(exc.reply)
            return
        self._reply("250 2.0.0 Ok")

    def smtp_RSET(self, arg: str | None) -> None:
        self.session.xforward = {}
        if arg:
            self._reply("501 Syntax: RSET")
            return
        self._new_transaction()
        self._reply("250 OK")

    def smtp_DATA(self, arg: str | None) -> None:
        if self._helo_needed():
            return
        if not self.envelope.rcpt_tos:
            self._reply("503 Error: need RCPT command")
            return
        if arg:
            self._reply("501 Syntax: DATA")
            return
        self._reply("354 End data with <CR><LF>.<CR><LF>")
        self._data = DataReader(line_limit=self.line_length_limit,
                                size_limit=self.data_size_limit)


def parse_address(arg: str) -> tuple[str | None, str | None]:
    """An SMTP path and what follows it, with the standard library's address parser:
    ``(address, rest)``; ``(None, None)`` if malformed, ``("", "")`` if ``arg`` is empty."""
    if not arg:
        return "", ""
    try:
        if arg.lstrip().startswith("<"):
            address, rest = get_angle_addr(arg)
        else:
            address, rest = get_addr_spec(arg)
        return address.addr_spec, rest
    except Exception:  # HeaderParseError, and junk the parser trips over ("<": IndexError)
        return None, None

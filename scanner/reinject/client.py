"""A small asyncio SMTP/LMTP client for reinjection.

Why our own: smtplib blocks the event loop and its LMTP ``data()`` reads one reply
where LMTP sends one per recipient; aiosmtplib speaks no LMTP. A reinjection client
needs per-recipient replies, XFORWARD, verbatim DSN parameters and PIPELINING, and
nothing else, so it stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

from scanner.errors import NextHopError
from scanner.streams import has_line, idle_and_open

# Writes up to this size are joined into one buffer (one TCP segment for commands and
# small content); a larger piece is written by itself, saving a copy of a big message.
_JOIN_LIMIT = 256 * 1024
# a large piece goes out in slices of this size, each written once the socket has
# taken the previous one: asyncio would otherwise copy what the socket cannot take at
# once (most of a big message) into its own buffer, a second copy of the message
_SLICE = 1024 * 1024


@dataclass(slots=True)
class Reply:
    """One (possibly multi-line) reply of the next hop."""

    code: int
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The reply on one line: ``250 2.0.0 Ok: queued as ABC``."""
        return f"{self.code} {' '.join(self.lines)}".strip()

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400


class SMTPClient:
    """One connection to the next hop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float, lmtp: bool) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self.lmtp = lmtp
        self.extensions: dict[str, str] = {}
        self._queued: list[bytes] = []

    @classmethod
    async def connect(cls, host: str, port: int, *, connect_timeout: float, timeout: float,
                      lmtp: bool) -> SMTPClient:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=1 << 16), connect_timeout)
        except (TimeoutError, OSError) as exc:
            raise NextHopError(f"cannot connect to [{host}]:{port}: {_why(exc)}") from None
        return cls(reader, writer, timeout, lmtp)

    async def read_reply(self) -> Reply:
        """Read one reply (all its continuation lines)."""
        reply = Reply(0)
        reader = self._reader
        while True:
            try:
                if has_line(reader):  # pipelined replies come together: no wait, no timer
                    raw = await reader.readline()
                else:
                    async with asyncio.timeout(self._timeout):  # no Task, unlike wait_for
                        raw = await reader.readline()
            except (TimeoutError, OSError, ValueError) as exc:
                raise NextHopError(f"no reply from next hop: {_why(exc)}") from None
            if not raw:
                raise NextHopError("next hop closed the connection")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            # a reply is one code, 2xx to 5xx, on every line (RFC 5321 4.2); anything
            # else leaves the outcome unknown: never read "2500" or "550-...250" as 250
            if (len(line) < 3 or not line[:3].isdigit() or line[0] not in "2345"
                    or line[3:4] not in ("", " ", "-")
                    or reply.lines and int(line[:3]) != reply.code):
                raise NextHopError(f"garbage from next hop: {line[:80]!r}")
            reply.code = int(line[:3])
            reply.lines.append(line[4:])
            if len(line) == 3 or line[3] != "-":
                return reply

    async def send_line(self, line: str) -> None:
        self._writer.write(line.encode("utf-8", "surrogateescape") + b"\r\n")
        await self._drain()

    def queue_line(self, line: str) -> None:
        """Buffer a command without sending it (for PIPELINING)."""
        self._queued.append(line.encode("utf-8", "surrogateescape") + b"\r\n")

    def queue_raw(self, data: bytes) -> None:
        """Buffer octets as they are (BDAT content)."""
        self._queued.append(data)

    async def flush(self) -> None:
        """Send what :meth:`queue_line` buffered, in one write (one TCP segment).

        A large piece (a big message's BDAT content) is written on its own instead of
        being joined to the commands: joining would copy the whole message once more."""
        queued, self._queued = self._queued, []
        await self._write(queued)

    async def _write(self, pieces: list[bytes]) -> None:
        """One write for small pieces together; when they are large, each piece alone
        and in slices, draining in between (the writes end drained either way)."""
        if sum(map(len, pieces)) <= _JOIN_LIMIT:
            self._writer.write(b"".join(pieces))
        else:
            for piece in pieces:
                view = memoryview(piece)  # not released here: a transport may hold a slice
                for start in range(0, len(view), _SLICE):
                    self._writer.write(view[start:start + _SLICE])
                    await self._drain()
        await self._drain()

    async def _drain(self) -> None:
        try:
            if self._writer.transport.get_write_buffer_size() == 0:
                # the socket took everything: drain cannot wait (it still raises for a
                # lost connection), so no timer is armed and cancelled for it
                await self._writer.drain()
                return
            async with asyncio.timeout(self._timeout):
                await self._writer.drain()
        except (TimeoutError, OSError) as exc:
            raise NextHopError(f"cannot write to next hop: {_why(exc)}") from None

    async def command(self, line: str) -> Reply:
        await self.send_line(line)
        return await self.read_reply()

    async def greet(self, name: str) -> None:
        """Read the banner and send EHLO/LHLO; remember the advertised extensions.

        An SMTP next hop that refuses EHLO (500/502: it does not know the command)
        gets HELO, as RFC 5321 3.2 and 4.1.4 allow and as Postfix's smtp client does
        for any reply but 2xx and 421 (amavis: any but 2xx); after HELO there are no
        extensions at all, so every command goes out without parameters and without
        pipelining. A 421 says the next hop is closing; LMTP has no HELO (RFC 2033)."""
        banner = await self.read_reply()
        if banner.code != 220:
            raise NextHopError(f"next hop greeting: {banner.text}", )
        reply = await self.command(f"{'LHLO' if self.lmtp else 'EHLO'} {name}")
        if reply.code != 250 and not self.lmtp and reply.code != 421:
            refused, reply = reply, await self.command(f"HELO {name}")
            if reply.code != 250:
                raise NextHopError(f"next hop refused EHLO ({refused.text}) and HELO: "
                                   f"{reply.text}")
            return
        if reply.code != 250:
            raise NextHopError(f"next hop refused {'LHLO' if self.lmtp else 'EHLO'}: "
                               f"{reply.text}")
        for line in reply.lines[1:]:
            key, _, value = line.partition(" ")
            self.extensions[key.upper()] = value

    def alive(self) -> bool:
        """False once the next hop closed the connection or we did, or sent anything
        between transactions: unasked output can only be a parting reply (Postfix's
        ``421 4.4.2 ... Error: timeout exceeded`` before it closes) or junk, and
        either would be read as the reply to our next command."""
        return idle_and_open(self._reader, self._writer)

    def supports(self, extension: str) -> bool:
        return extension.upper() in self.extensions

    async def send_data(self, data: bytes) -> None:
        """Send the message body, dot-stuffed, ending with CRLF.CRLF."""
        await self._write([dot_stuff(data), b".\r\n"])  # not copied again for 3 bytes

    async def quit(self) -> None:
        """Say goodbye politely; never raises."""
        try:
            self._writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self._writer.drain(), 5)
            await asyncio.wait_for(self._reader.readline(), 5)
        except (TimeoutError, OSError, ValueError):
            pass
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._writer.close()


def crlf_lines(data: bytes) -> bytes:
    """``data`` with every line ending in CRLF, the last one too: the content as DATA
    (after dot-stuffing) and BDAT send it.

    Postfix (and most MTAs) end a line at a bare LF, an RFC-strict receiver only at
    CRLF; with CRLF everywhere both see the same lines, so a dot after a bare LF can
    neither end the data early at the one (SMTP smuggling) nor gain a second dot at the
    other. RFC 3030 requires CRLF in BDAT content, and a Postfix set to
    ``smtpd_forbid_bare_newline = reject`` (3.9+) refuses bare LFs. Postfix stores every
    line the same way whichever ending it came with, so nothing changes for the
    recipient.
    """
    if data.count(b"\n") != data.count(b"\r\n"):
        data = _BARE_LF.sub(b"\r\n", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 transparency: double a dot that starts a line; every line, the last
    one too, ends with CRLF (:func:`crlf_lines`)."""
    data = crlf_lines(data)
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")


_BARE_LF = re.compile(rb"(?<!\r)\n")


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__

"""The floor of a Python after-queue filter: a bare asyncio SMTP relay, for run.py's (r).

What any content filter written in Python with asyncio must do for each message, and
nothing more: two pre-forked worker processes sharing one listening socket, each an
``asyncio.Protocol`` that answers Postfix's pipelined commands (replies to a pipelined
group in one write), reads DATA and undoes the dot-stuffing, then relays the message
over a kept connection to the reinjection smtpd in one write (XFORWARD as received,
MAIL, RCPT, ``BDAT n LAST`` with the content), reads the replies, answers 250 only after
the next hop's 250, and appends one line per message to a log file (one ``write``). No
SMTP library, no header parse, no limits or checks of any kind, no DSN or SMTPUTF8 handling:
not a product, a measuring stick. run.py's (r) compares it with (b) the same way (c)
compares ``scanner serve``, so (r)/(b) bounds what the spine's (c)/(b) could reach on
the machine.

    python bench/throughput/floor_relay.py --port 10024 --next-port 10025 --log FILE
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time

_EHLO = (b"250-floor\r\n250-PIPELINING\r\n250-SIZE 0\r\n250-8BITMIME\r\n"
         b"250-XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT\r\n250 ENHANCEDSTATUSCODES")
MAX_IDLE = 8  # kept connections per worker, as scanner.reinject.pool keeps at most


def _usable(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """A kept connection the next hop has not closed (after its idle timeout)."""
    return not (reader.at_eof() or writer.is_closing())


class NextHop:
    """Kept connections to the reinjection smtpd: one per message in flight, at most
    MAX_IDLE kept between messages (each holds one of the smtpd's processes)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        await reader.readline()  # 220
        writer.write(b"EHLO floor\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
        return reader, writer

    async def relay(self, commands: list[bytes], content: bytes) -> bytes:
        """Send one message; the next hop's final reply line, or a 451."""
        while self.idle and not _usable(*self.idle[-1]):  # the next hop hung up meanwhile
            self.idle.pop()[1].close()
        reused = bool(self.idle)
        try:
            async with asyncio.timeout(30):
                conn = self.idle.pop() if self.idle else await self._connect()
        except (OSError, TimeoutError) as exc:
            print(f"connect failed: {exc!r}", file=sys.stderr, flush=True)
            return b"451 4.4.1 cannot connect to the next hop"
        reader, writer = conn
        replies: list[bytes] = []
        try:
            writer.write(b"".join(commands) + b"BDAT %d LAST\r\n" % len(content) + content)
            async with asyncio.timeout(30):
                for _ in range(len(commands) + 1):
                    replies.append(await reader.readline())
        except (OSError, TimeoutError) as exc:
            print(f"relay failed: {exc!r} reused={reused} commands={commands!r} "
                  f"replies={replies!r} size={len(content)}", file=sys.stderr, flush=True)
            writer.close()
            return b"451 4.4.1 next hop failed"
        if not all(r.startswith(b"250") for r in replies):
            writer.close()
            return b"451 4.4.1 next hop refused: " + replies[-1].strip()
        if len(self.idle) < MAX_IDLE:
            self.idle.append(conn)
        else:  # as the product's pool: the reinjection smtpd's processes are few
            writer.write(b"QUIT\r\n")
            writer.close()
        return b"250 2.0.0 relayed: " + replies[-1].strip()


class Session(asyncio.Protocol):
    """One connection from Postfix's content_filter transport."""

    def __init__(self, hop: NextHop, log_fd: int) -> None:
        self.hop = hop
        self.log_fd = log_fd
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.in_data = False
        self.busy = False
        self.pending: list[bytes] = []
        self.xforward: list[bytes] = []
        self.envelope: list[bytes] = []  # MAIL and RCPT lines as received

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 floor ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.process()

    def process(self) -> None:
        while not self.busy:
            if self.in_data:
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    break
                content = bytes(self.buf[:end + 2]).replace(b"\r\n..", b"\r\n.")
                if content.startswith(b".."):
                    content = content[1:]
                del self.buf[:end + 5]
                self.in_data = False
                self.busy = True
                asyncio.get_running_loop().create_task(self.deliver(content))
                break
            end = self.buf.find(b"\r\n")
            if end < 0:
                break
            line = bytes(self.buf[:end + 2])
            del self.buf[:end + 2]
            self.command(line)
        if self.pending and (self.busy or b"\r\n" not in self.buf) and self.transport:
            self.transport.write(b"\r\n".join(self.pending) + b"\r\n")
            self.pending = []

    def command(self, line: bytes) -> None:
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            self.pending.append(_EHLO)
        elif verb == b"XFOR":
            self.xforward.append(line)
            self.pending.append(b"250 2.0.0 Ok")
        elif verb in (b"MAIL", b"RCPT"):
            self.envelope.append(line)
            self.pending.append(b"250 2.1.0 Ok")
        elif verb == b"DATA":
            self.in_data = True
            self.pending.append(b"354 End data with <CR><LF>.<CR><LF>")
        elif verb == b"RSET":
            self.xforward, self.envelope = [], []
            self.pending.append(b"250 2.0.0 Ok")
        elif verb == b"QUIT":
            self.pending.append(b"221 2.0.0 Bye")
            assert self.transport is not None
            self.transport.write(b"\r\n".join(self.pending) + b"\r\n")
            self.pending = []
            self.transport.close()
        else:
            self.pending.append(b"250 2.0.0 Ok")

    async def deliver(self, content: bytes) -> None:
        started = time.monotonic()
        reply = await self.hop.relay([*self.xforward, *self.envelope], content)
        self.xforward, self.envelope = [], []
        ms = round((time.monotonic() - started) * 1000)
        os.write(self.log_fd, b"floor relay %s, mail_id: -, %d ms\n" % (reply[:3], ms))
        self.pending.append(reply)
        self.busy = False
        if self.transport is not None and not self.transport.is_closing():
            self.process()
            if self.pending:
                self.transport.write(b"\r\n".join(self.pending) + b"\r\n")
                self.pending = []

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(sock: socket.socket, next_port: int, log_fd: int) -> None:
    hop = NextHop(next_port)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Session(hop, log_fd), sock=sock)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--next-port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    sock = socket.create_server(("127.0.0.1", args.port), backlog=128, reuse_port=False)
    sock.setblocking(False)
    log_fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            asyncio.run(serve(sock, args.next_port, log_fd))
            os._exit(0)
        children.append(pid)
    signal.signal(signal.SIGTERM, lambda *_: [os.kill(c, signal.SIGTERM) for c in children])
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A scripted next hop for the reinjection tests: it answers as a :class:`Script`
says and records every octet it receives (commands and content)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from scanner.reinject.deliver import NextHop, Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.task import ClientInfo, Recipient

CONTENT = b"Subject: t\r\n\r\n.starts with a dot\r\nlast line without CRLF"


@dataclass
class Script:
    """How the scripted next hop answers, and what it saw."""

    lmtp: bool = False
    chunking: bool = True
    rcpt: dict[str, str] = field(default_factory=dict)  # address -> reply (default 250)
    xforward_reply: str = "250 2.0.0 Ok"
    xforward_replies: list[str] = field(default_factory=list)  # used first, one each
    mail_reply: str = "250 2.1.0 Ok"
    rcpt_limit: int = 0  # recipients taken per transaction (0: any number)
    too_many_reply: str = "452 4.5.3 Error: too many recipients"
    drop_at_bdat: int = 0  # close the connection after reading the n-th BDAT chunk
    lmtp_replies_then_drop: int | None = None  # after DATA's dot: this many, then close
    drop_at_data: bool = False  # close the connection instead of answering DATA
    pipelining: bool = True
    idle_421_after: float | None = None  # say 421 and close when idle this long
    ehlo_reply: str = ""  # instead of the EHLO/LHLO reply with extensions
    extensions: list[str] | None = None  # instead of the ones the fields above give
    commands: list[str] = field(default_factory=list)
    contents: list[bytes] = field(default_factory=list)
    connections: int = 0
    bdats: int = 0


async def serve_script(script: Script, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
    script.connections += 1
    writer.write(b"220 hop ESMTP\r\n")
    accepted: list[str] = []
    mail_ok = False
    while True:
        try:
            async with asyncio.timeout(script.idle_421_after):
                line = await reader.readline()
        except TimeoutError:  # like Postfix's smtpd: a parting reply, then close
            writer.write(b"421 4.4.2 hop Error: timeout exceeded\r\n")
            await writer.drain()
            break
        if not line:
            break
        cmd = line.decode().rstrip("\r\n")
        script.commands.append(cmd)
        verb = cmd.split(" ", 1)[0].upper()
        if verb in ("EHLO", "LHLO") and script.ehlo_reply:
            writer.write(script.ehlo_reply.encode() + b"\r\n")
        elif verb == "HELO":
            writer.write(b"250 hop\r\n")
        elif verb in ("EHLO", "LHLO"):
            ext = ["PIPELINING"] if script.pipelining else []
            ext += ["XFORWARD NAME ADDR PROTO HELO", "8BITMIME"]
            ext += ["CHUNKING"] if script.chunking else []
            ext = ext if script.extensions is None else script.extensions
            writer.write(("".join(f"250-{e}\r\n" for e in ["hop", *ext[:-1]])
                          + f"250 {ext[-1]}\r\n").encode())
        elif verb == "XFORWARD":
            reply = (script.xforward_replies.pop(0) if script.xforward_replies
                     else script.xforward_reply)
            writer.write(reply.encode() + b"\r\n")
            if reply.startswith("421"):
                await writer.drain()
                break
        elif verb == "MAIL":
            mail_ok, accepted = script.mail_reply.startswith("2"), []
            writer.write(script.mail_reply.encode() + b"\r\n")
        elif verb == "RCPT":
            address = cmd.split("<", 1)[1].split(">", 1)[0]
            reply = script.rcpt.get(address, "250 2.1.5 Ok")
            if script.rcpt_limit and len(accepted) >= script.rcpt_limit:
                reply = script.too_many_reply
            if reply.startswith("2") and mail_ok:
                accepted.append(address)
            writer.write(reply.encode() + b"\r\n")
        elif verb == "BDAT":
            size = int(cmd.split()[1])
            data = await reader.readexactly(size)
            script.bdats += 1
            if script.bdats == script.drop_at_bdat:
                writer.close()
                return
            if accepted:
                script.contents.append(data)
            replies = [f"250 2.0.0 Ok: queued as Q{len(script.contents)}" if accepted
                       else "554 5.5.1 Error: no valid recipients"]
            writer.write("".join(r + "\r\n" for r in replies).encode())
            mail_ok, accepted = False, []
        elif verb == "DATA":
            if script.drop_at_data:
                break
            if not accepted:
                writer.write(b"554 5.5.1 Error: no valid recipients\r\n")
                continue
            writer.write(b"354 go ahead\r\n")
            body = bytearray()
            while (chunk := await reader.readline()) != b".\r\n":
                body += chunk
            script.contents.append(bytes(body))
            replies = ([f"250 2.0.0 <{a}> Ok: queued as Q{len(script.contents)}"
                        for a in accepted] if script.lmtp
                       else [f"250 2.0.0 Ok: queued as Q{len(script.contents)}"])
            if script.lmtp_replies_then_drop is not None:
                replies = replies[:script.lmtp_replies_then_drop]
                writer.write("".join(r + "\r\n" for r in replies).encode())
                await writer.drain()
                break
            writer.write("".join(r + "\r\n" for r in replies).encode())
            mail_ok, accepted = False, []
        elif verb == "RSET":
            mail_ok, accepted = False, []
            writer.write(b"250 2.0.0 Ok\r\n")
        elif verb == "QUIT":
            writer.write(b"221 2.0.0 Bye\r\n")
            break
        await writer.drain()
    writer.close()


def run_script(script: Script, outs: list[Outgoing], *, all_or_nothing: bool = True,
         xforward: bool = True, chunking: bool = True, pause: float = 0.0,
         ) -> list[list[str]]:
    async def main() -> list[list[str]]:
        server = await asyncio.start_server(
            lambda r, w: serve_script(script, r, w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        hop = NextHop("127.0.0.1", port, script.lmtp, 2, 2, "scanner.test", xforward,
                      chunking)
        pool = ConnectionPool(hop)
        try:
            replies = []
            for out in outs:
                replies.append((await deliver(pool, out, all_or_nothing=all_or_nothing))
                               .replies)
                await asyncio.sleep(pause)
            return replies
        finally:
            await pool.close()
            server.close()
    return asyncio.run(main())


def make_out(*rcpts: str) -> Outgoing:
    return Outgoing("a@example.org", [Recipient(r) for r in rcpts], (), CONTENT,
                    ClientInfo(addr="192.0.2.1", name="client.example", helo="client.example"))


def bdat_batches(script: Script) -> int:
    return sum(c.startswith("BDAT ") for c in script.commands)

"""Prove a listener change neutral: every byte the SMTP/LMTP listener answers, old code
against new.

Generates a fixed set of scripted sessions (seeded: the same sessions every run) from a
vocabulary of good and broken commands, addresses, ESMTP parameters, XFORWARD lines and
DATA contents (dot lines, bare CR and LF, overlong lines, content over the size limit, a
scan that raises, a slow scan with commands pipelined behind it), sends each to
``scanner.smtp.server.FilterSMTP`` or ``FilterLMTP`` (all at once, or a command at a
time), and records what comes back and whether the listener closed the connection. A
scripted handler stands in for the Processor (RCPT refusals by address, a DATA reply
that quotes the content's digest, the envelope, the parameters and the XFORWARD
attributes it got), so a difference in what reaches the handler shows too.

Each side runs in a child process with its tree first on ``sys.path``:

    scripts/listener_differential.py --old /tmp/base-clone [--new .] [--sessions 600]

Exit status 0 when every session's transcript is identical, 1 otherwise (the kinds of
differences are printed, with the first sessions of each). Not part of the package; run
by hand. Used for the move from aiosmtpd's engine to our own protocol (2026-12-07,
``--old`` at b78ee52: 562 of 600 sessions identical, the other 38 differing only in
their HELP replies, the intended change).
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import hashlib
import ipaddress
import json
import os
import random
import subprocess
import sys
import tempfile
from typing import Any

ADDRESSES = [
    b"<alice@example.org>", b"<>", b"<bob@example.test>", b"<\xc3\xa9l\xc3\xa8ve@example.org>",
    b"<a@b>", b"<no-at-sign>", b"<@route:a@b>", b"alice@example.org", b"<", b"<a b@c>", b"< ",
    b"<x@[192.0.2.1]>", b"<" + b"l" * 300 + b"@example.org>", b"<a@b\x00c>", b"<refuse@x.test>",
    b"<temp@x.test>", b'<"quoted local"@example.org>', b"<a@b> (comment)", b"<a@b>x", b"",
    b" <alice@example.org>", b"<alice@example.org>  ", b"<Alice (c) @example.org>", b"<<a@b>>",
]
PARAMS = [
    b"", b" BODY=8BITMIME", b" SMTPUTF8", b" SIZE=100", b" SIZE=abc", b" SIZE=99999999999",
    b" BODY=BINARYMIME", b" RET=HDRS ENVID=x+2By", b" NOTIFY=SUCCESS,FAILURE", b" SIZE=30000",
    b" ORCPT=rfc822;a@b", b" FOO=bar", b" =", b" NOTIFY=NEVER,SUCCESS", b" ORCPT=rfc822;a+0Db",
    b" envid=lower", b" RET=FULL RET=HDRS", b"  BODY=7BIT", b" NOTIFY=never", b" ORCPT=x",
]
COMMANDS = [
    b"EHLO postfix.test", b"HELO postfix.test", b"LHLO postfix.test", b"EHLO", b"HELO",
    b"LHLO", b"RSET", b"RSET x", b"NOOP", b"NOOP x", b"VRFY bob", b"VRFY <bob@x>", b"VRFY",
    b"VRFY <", b"EXPN list", b"HELP", b"HELP MAIL", b"HELP NOOP", b"HELP junk", b"help data",
    b"DATA", b"DATA x", b"BDAT 10", b"STARTTLS", b"AUTH PLAIN AAAA", b"QUIT x",
    b"XFORWARD ADDR=192.0.2.7 NAME=mx.example.org", b"XFORWARD ADDR=junk PORT=-1 PROTO=\xff",
    b"XFORWARD FOO=bar", b"XFORWARD", b"XFORWARD ADDR=IPV6:2001:db8::1 PORT=25 SOURCE=REMOTE",
    b"XFORWARD NAME=[UNAVAILABLE] HELO=x+41y IDENT=abc PROTO=ESMTP", b"XFORWARD SOURCE=bad",
    b"XFORWARD ADDR=010.1.1.1", b"MAIL", b"RCPT", b"mail from:<a@b>", b"rcpt to:<c@d>",
    b"QUITX", b"MAIL FROM", b"MAIL TO:<a@b>", b"RCPT FROM:<a@b>", b"", b" ", b"\xff\xfe",
    b"NOOP \xff", b"MAIL FROM:<a@b> SIZE=1 SIZE=2", b"NOOP " + b"x" * 5000,
    b"NOOP " + b"x" * 3000, b"MAIL FROM:<" + b"a" * 4100 + b"@b>", b"\x00", b"NO\x00OP",
    b"ehlo mixed.case", b"Rset", b"NOOP\t", b"XFORWARD  ADDR=192.0.2.9",
]
CONTENT = [
    b"Subject: x\r\n\r\nhello", b"", b".", b"..", b".x", b"\n.\n", b"\r.\r", b"y" * 1100,
    b"y" * 25000, b"From nobody", b"\xe2\x82\xac" * 30, b"SLOW", b"RAISE", b"a\r\n.b\r\n..c",
    b"x\n.\r\nMAIL FROM:<evil@x>", b"\x00\xff", b"line\rline", b"z" * 70000,
]
LINE_LIMIT = 4000
SIZE_LIMIT = 20000


class Handler:
    """Stands in for the Processor: answers from what it was given."""

    def __init__(self, lmtp: bool) -> None:
        self.lmtp = lmtp

    def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                    responses: list[str]) -> list[str]:
        # what scanner.smtp.handler.ehlo_lines answers, written out here: the stand-in
        # must not depend on either tree's code (older trees have no such function)
        session.host_name = hostname
        keywords = ["PIPELINING", f"SIZE {SIZE_LIMIT}", "8BITMIME", "SMTPUTF8",
                    "ENHANCEDSTATUSCODES", "DSN"]
        if session.xforward_allowed:
            keywords.append("XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE")
        return [responses[0], *(f"250-{k}" for k in keywords[:-1]), f"250 {keywords[-1]}"]

    def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                    params: list) -> str:
        if "refuse" in address:
            return "550 5.1.1 no such user"
        if "temp" in address:
            return "450 4.2.0 try later"
        if len(envelope.rcpt_tos) >= 4:
            return "452 4.5.3 Error: too many recipients"
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = bytes(envelope.original_content)
        if b"SLOW" in content:
            await asyncio.sleep(0.2)
        if b"RAISE" in content:
            raise RuntimeError("a scripted failure")
        digest = hashlib.sha1(content).hexdigest()[:10]
        seen = (f"{len(content)} {envelope.mail_from} {sorted(session.xforward.items())} "
                f"{[list(map(list, p)) for p in envelope.rcpt_params]} "
                f"{envelope.mail_params}")
        replies = [f"250 2.0.0 Ok: {digest} {seen}" for _ in envelope.rcpt_tos]
        return "\r\n".join(replies) if self.lmtp else replies[0]


class AwaitedHooks:
    """The same hooks as coroutines, for the listener on aiosmtpd (before 2026-12-07),
    which awaited every hook."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:  # aiosmtpd counts these
        return self._handler.handle_EHLO(server, session, envelope, hostname, responses)

    async def handle_RCPT(self, *args: Any) -> str:
        return self._handler.handle_RCPT(*args)

    async def handle_DATA(self, *args: Any) -> str:
        return await self._handler.handle_DATA(*args)


def _content(rng: random.Random) -> bytes:
    lines = [rng.choice(CONTENT) for _ in range(rng.randint(0, 4))]
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)


def _session(rng: random.Random, lmtp: bool) -> list[bytes]:
    """What one client sends, in the writes it sends it in."""
    lines = ([b"LHLO postfix.test" if lmtp else b"EHLO postfix.test"]
             if rng.random() < 0.9 else [])
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if kind < 0.35:
            lines.append(rng.choice(COMMANDS))
        elif kind < 0.55:
            lines.append(b"MAIL FROM:" + rng.choice(ADDRESSES) + rng.choice(PARAMS))
            lines += [b"RCPT TO:" + rng.choice(ADDRESSES) + rng.choice(PARAMS)
                      for _ in range(rng.randint(0, 3))]
        else:
            lines.append(b"MAIL FROM:<alice@example.org>" + rng.choice(
                [b"", b" BODY=8BITMIME", b" SMTPUTF8", b" RET=HDRS ENVID=a+2Bb"]))
            lines += [b"RCPT TO:" + rng.choice([b"<bob@example.test>", b"<carol@example.test>",
                                                b"<refuse@x.test>", b"<temp@x.test>"])
                      + rng.choice([b"", b" NOTIFY=SUCCESS,FAILURE",
                                    b" ORCPT=rfc822;bob@example.test"])
                      for _ in range(rng.randint(1, 3))]
            lines += [b"DATA", _content(rng) + b"."]
    if rng.random() < 0.7:
        lines.append(b"QUIT")
    if rng.random() < 0.5:
        return [b"".join(line + b"\r\n" for line in lines)]  # pipelined, all at once
    return [line + b"\r\n" for line in lines]


def sessions(count: int) -> list[tuple[bool, list[bytes]]]:
    rng = random.Random(12345)
    out = []
    for _ in range(count):
        lmtp = rng.random() < 0.3
        writes = _session(rng, lmtp)
        out.append((lmtp, writes))
    return out


async def _talk(port: int, writes: list[bytes]) -> tuple[str, bool]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = bytearray()

    async def read() -> None:
        while data := await reader.read(65536):
            got.extend(data)

    task = asyncio.create_task(read())
    for data in writes:
        try:
            writer.write(data)
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.05)
    size = -1
    for _ in range(40):  # until quiet for 0.6 s, or closed
        if task.done() or len(got) == size:
            break
        size = len(got)
        await asyncio.sleep(0.6)
    closed = task.done()
    writer.close()
    task.cancel()
    return got.decode("latin-1"), closed


async def record(count: int) -> list[dict]:
    """Run every session against this tree's listener (in this process)."""
    from scanner.smtp import server
    from scanner.smtp.server import FilterLMTP, FilterSMTP

    loop = asyncio.get_running_loop()
    networks = (ipaddress.ip_network("127.0.0.0/8"),)
    ports = {}
    for lmtp, cls in ((False, FilterSMTP), (True, FilterLMTP)):
        handler: Any = Handler(lmtp)
        if hasattr(server, "SMTP"):  # aiosmtpd's class: the listener before 2026-12-07
            handler = AwaitedHooks(handler)

        def factory(cls: type = cls, handler: Any = handler) -> Any:
            return cls(handler, max_line_length=LINE_LIMIT, xforward_networks=networks,
                       hostname="filter.test", ident="scanner", data_size_limit=SIZE_LIMIT,
                       timeout=30, loop=loop)

        listening = await loop.create_server(factory, "127.0.0.1", 0)
        ports[lmtp] = listening.sockets[0].getsockname()[1]
    scripts = sessions(count)
    gate = asyncio.Semaphore(50)

    async def one(lmtp: bool, writes: list[bytes]) -> tuple[str, bool]:
        async with gate:
            return await _talk(ports[lmtp], writes)

    results = await asyncio.gather(*[one(lmtp, writes) for lmtp, writes in scripts])
    return [{"lmtp": lmtp, "sent": [w.decode("latin-1") for w in writes], "got": got,
             "closed": closed}
            for (lmtp, writes), (got, closed) in zip(scripts, results, strict=True)]


def _side(tree: str, count: int, out: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    subprocess.run([sys.executable, os.path.abspath(__file__), "--record", out,
                    "--sessions", str(count)], cwd=os.path.abspath(tree), env=env, check=True,
                   stderr=subprocess.DEVNULL)


def compare(old: list[dict], new: list[dict]) -> int:
    kinds: dict[tuple[str, ...], list[int]] = {}
    for i, (a, b) in enumerate(zip(old, new, strict=True)):
        if a["got"] == b["got"] and a["closed"] == b["closed"]:
            continue
        diff = [line for line in difflib.unified_diff(
            a["got"].split("\r\n"), b["got"].split("\r\n"), lineterm="", n=0)
            if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        if a["closed"] != b["closed"]:
            diff.append(f"closed: {a['closed']} -> {b['closed']}")
        kinds.setdefault(tuple(line[:60] for line in diff[:4]), []).append(i)
    print(f"{sum(map(len, kinds.values()))} of {len(old)} sessions differ")
    for kind, where in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(where)} (sessions {where[:5]}):")
        for line in kind:
            print(f"      {line!r}")
    return 1 if kinds else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", help="the tree with the code to compare against")
    parser.add_argument("--new", default=".", help="the tree with the changed code (.)")
    parser.add_argument("--sessions", type=int, default=600)
    parser.add_argument("--record", help=argparse.SUPPRESS)  # a child's output file
    args = parser.parse_args()
    if args.record:
        sys.path.insert(0, os.getcwd())
        with open(args.record, "w", encoding="utf-8") as f:
            json.dump(asyncio.run(record(args.sessions)), f)
        return 0
    if not args.old:
        parser.error("--old is required")
    with tempfile.TemporaryDirectory() as tmp:
        old_file, new_file = os.path.join(tmp, "old.json"), os.path.join(tmp, "new.json")
        _side(args.old, args.sessions, old_file)
        _side(args.new, args.sessions, new_file)
        with open(old_file, encoding="utf-8") as f:
            old = json.load(f)
        with open(new_file, encoding="utf-8") as f:
            new = json.load(f)
    return compare(old, new)


if __name__ == "__main__":
    sys.exit(main())

"""Shared pieces of the tests of recipients with different policies in one message
(tests/policy/test_recipient_mix.py, test_recipient_replies.py and others): fixed hits,
a run through the real Processor to the test sink, and readers of what it delivered
and logged."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from scanner.config import loads
from scanner.pipeline.processor import Listener, Processor
from scanner.reinject.deliver import NextHop
from scanner.scores import load_scores
from scanner.task import ClientInfo, Envelope, Hit, Recipient, Task
from scanner.testing.sink import Sink

EICAR = Hit("CLAMAV_VIRUS", options=("Eicar-Signature",), source="clamav")
WORM = Hit("CLAMAV_VIRUS", options=("Win.Worm.Mydoom",), source="clamav")
BANNED = Hit("BANNED_FILE", part="P=p003,L=1/2,T=exe-ms,N=invoice.pdf.exe", source="banned")
BADH = Hit("BAD_HEADER_CONTROL", options=("Subject: control character",), source="badheader")
ENCRYPTED = Hit("DECODE_ENCRYPTED", source="decode")
BAYES = Hit("BAYES_99", source="bayes")
RAW = (b"From: promo@spam.example\r\nTo: bob@example.test\r\nSubject: offer\r\n"
       b"Message-ID: <mix@spam.example>\r\n\r\nthe body BODYMARK\r\n")


class FakeCheck:
    """A check that reports fixed hits (kind decides which bypass flag drops them)."""

    def __init__(self, name: str, kind: str, hits: list[Hit]) -> None:
        self.name, self.kind, self._hits = name, kind, hits

    async def run(self, task: Task) -> list[Hit]:
        return [h for h in self._hits if h.source == self.name]


class FakeQuarantine:
    def __init__(self) -> None:
        self.stored: list[dict] = []

    def store(self, **kw: Any) -> Any:
        self.stored.append(kw)
        return SimpleNamespace(relative_path=f"{kw['mail_id'][0]}/x-{kw['mail_id']}.gz")

    def delete(self, mail_id: str) -> None:
        self.stored = [kw for kw in self.stored if kw["mail_id"] != mail_id]


def run(sink: Sink, policy: str, hits: list[Hit], rcpts: list[str | Recipient],
        sender: str = "promo@spam.example", protocol: str = "ESMTP", raw: bytes = RAW,
        mail_params: tuple = (), deliver: Any = None, extra_checks: tuple = ()
        ) -> tuple[list[str], FakeQuarantine]:
    config = loads('[checks]\nenabled = []\n[quarantine]\nampdp_socket = ""\n'
                   "[policy]\nlocal_domains = ['example.test']\n" + policy, "t.toml")
    kinds = {"clamav": "virus", "banned": "banned", "badheader": "header", "bayes": "spam",
             "decode": "virus"}
    checks = [FakeCheck(n, k, hits) for n, k in kinds.items() if n != "decode"]
    checks.append(FakeCheck("decode_hits", "virus", [
        Hit(h.symbol, h.factor, h.options, h.part, "decode_hits") for h in hits
        if h.source == "decode"]))
    checks += extra_checks
    quarantine = FakeQuarantine()

    async def inline(func: Any, *args: Any) -> Any:
        return func(*args)

    hop = NextHop("127.0.0.1", sink.port, False, 2, 5, "scanner.test", True)
    proc = Processor(config, checks, load_scores(), hop, "scanner.test", run_cpu=inline,
                     quarantine=quarantine)
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=raw,
                envelope=Envelope(sender, tuple(r if isinstance(r, Recipient) else Recipient(r)
                                                for r in rcpts), mail_params=mail_params),
                client=ClientInfo(addr="192.0.2.7", port="4000"))

    async def go() -> list[str]:
        try:
            return await proc.handle(task, Listener(10024, protocol, ""), deliver)
        finally:
            await proc._pool.close()

    return asyncio.run(go()), quarantine


def copies(sink: Sink) -> dict[str, bytes]:
    """What the next hop got, by recipient (our DSNs left out)."""
    return {r: m.data for m in sink.received if m not in dsns(sink) for r in m.recipients}


def dsns(sink: Sink) -> list[Any]:
    return [m for m in sink.received
            if m.sender == "<>" and b"Content-Type: multipart/report;" in m.data]


def head(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The message's summary lines: two (Passed, then Blocked) when its recipients had
    different outcomes."""
    return [r.getMessage() for r in caplog.records if "mail_id: abcdefghijkl" in r.getMessage()]


def summary(caplog: pytest.LogCaptureFixture) -> str:
    """The message's one summary line (its recipients all had one outcome)."""
    [line] = summaries(caplog)
    return line

"""Keep connections to the next hop open between messages (per worker process).

Opening a connection costs a TCP handshake, the banner and EHLO, and on Postfix's side
an smtpd process switch; reusing one costs nothing. Idle connections are dropped after
``idle_timeout`` seconds (well under Postfix's smtpd timeout of 300 s), and one that the
next hop closed is noticed before use.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from scanner.reinject.client import SMTPClient


@dataclass(slots=True)
class _Idle:
    client: SMTPClient
    since: float


class ConnectionPool:
    """Idle SMTP/LMTP connections to one next hop."""

    def __init__(self, hop: object, max_idle: int = 8, idle_timeout: float = 20.0) -> None:
        self.hop = hop
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout
        self._idle: list[_Idle] = []

    async def acquire(self) -> tuple[SMTPClient, bool]:
        """A greeted connection and whether it was reused."""
        now = time.monotonic()
        while self._idle:
            entry = self._idle.pop()
            if now - entry.since < self._idle_timeout and entry.client.alive():
                return entry.client, True
            asyncio.get_running_loop().create_task(entry.client.quit())
        hop = self.hop
        client = await SMTPClient.connect(hop.host, hop.port, lmtp=hop.lmtp,  # type: ignore
                                          connect_timeout=hop.connect_timeout,  # type: ignore
                                          timeout=hop.timeout)  # type: ignore
        try:
            await client.greet(hop.helo)  # type: ignore[attr-defined]
        except BaseException:
            client.close()
            raise
        return client, False

    def release(self, client: SMTPClient) -> None:
        """Return a connection that is between transactions and healthy."""
        if len(self._idle) < self._max_idle and client.alive():
            self._idle.append(_Idle(client, time.monotonic()))
        else:
            asyncio.get_running_loop().create_task(client.quit())

    def discard(self, client: SMTPClient) -> None:
        client.close()

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().client.quit()

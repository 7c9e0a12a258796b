"""server.concurrency is enforced: a worker keeps at most its share of connections open,
and a connection beyond the limit waits in the listen queue until one closes."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scanner.serve.accept import ConnectionLimit, worker_shares
from scanner.testing.postfix import free_port
from tests.helpers import start_filter


@pytest.mark.parametrize("concurrency,workers", [(20, 2), (20, 3), (3, 2), (1, 1), (7, 7)])
def test_shares_add_up_to_the_setting_and_are_never_empty(concurrency, workers):
    shares = worker_shares(concurrency, workers)
    assert sum(shares) == concurrency and len(shares) == workers
    assert min(shares) >= 1 and max(shares) - min(shares) <= 1


def test_a_limit_below_one_is_refused():
    async def go() -> None:
        ConnectionLimit(0, asyncio.get_running_loop())

    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(go())


class _Session(asyncio.Protocol):
    """Greets, then keeps a session task running until the peer closes (like aiosmtpd)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.closed = asyncio.get_running_loop().create_future()
        self.session_task = asyncio.get_running_loop().create_task(self._session())
        transport.write(b"220 hello\r\n")  # type: ignore[attr-defined]

    async def _session(self) -> None:
        await self.closed

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)


async def _greeting(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    try:
        return await asyncio.wait_for(reader.readline(), seconds)
    except TimeoutError:
        return None


def test_the_third_connection_waits_until_one_of_two_closes():
    async def go() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        limit = ConnectionLimit(2, loop)
        limit.serve(listener, _Session)
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        first, second = [await _greeting(r, 5) for r, _ in clients[:2]]
        assert first == second == b"220 hello\r\n"
        assert await _greeting(clients[2][0], 0.5) is None  # in the listen queue
        assert limit.open == 2
        clients[0][1].close()
        assert await _greeting(clients[2][0], 5) == b"220 hello\r\n"
        assert limit.open == 2
        limit.close()
        for _, writer in clients[1:]:
            writer.close()
        for _ in range(50):
            if limit.open == 0:
                break
            await asyncio.sleep(0.02)
        assert limit.open == 0
        listener.close()

    asyncio.run(go())


def test_an_idle_listener_holds_no_slot_of_the_share():
    """Two listeners (10024 and an ORIGINATING 10026, say) share a worker's limit. Each
    accept loop took a slot and held it while waiting for a connection, so a listener
    nobody used kept one slot to itself: with a share of 2, the busy listener was
    greeted once at a time; with a share of 1, after its first session its accept loop
    queued behind the idle one and it never greeted again (Postfix's connects waited
    for smtp_helo_timeout, mail deferred, until someone used the other listener)."""
    async def go() -> None:
        loop = asyncio.get_running_loop()
        busy, idle = (socket.create_server(("127.0.0.1", 0)) for _ in range(2))
        for sock in (busy, idle):
            sock.setblocking(False)
        port = busy.getsockname()[1]
        for share in (2, 1):
            limit = ConnectionLimit(share, loop)
            limit.serve(busy, _Session)
            limit.serve(idle, _Session)
            await asyncio.sleep(0.05)  # both accept loops wait for a connection
            for _ in range(2):  # a second round: the first freed its slots again
                clients = [await asyncio.open_connection("127.0.0.1", port)
                           for _ in range(share + 1)]
                greetings = [await _greeting(r, 5) for r, _ in clients[:share]]
                assert greetings == [b"220 hello\r\n"] * share, (share, greetings)
                assert await _greeting(clients[share][0], 0.3) is None  # over the share
                clients[0][1].close()
                assert await _greeting(clients[share][0], 5) == b"220 hello\r\n"
                for _, writer in clients[1:]:
                    writer.close()
                for _ in range(250):
                    if limit.open == 0:
                        break
                    await asyncio.sleep(0.02)
                assert limit.open == 0
            limit.close()
            await asyncio.sleep(0)
        busy.close()
        idle.close()

    asyncio.run(go())


def _status(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "scanner", "status", "--file", str(path),
                           "--json"], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)


def _greeted(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    try:
        return sock.recv(512)
    except TimeoutError:
        return b""


def test_scanner_serve_keeps_at_most_server_concurrency_connections(tmp_path):
    """Two workers, concurrency 3 (shares 2 and 1): three sessions are greeted, the
    fourth only after one of them quits; the daemon keeps serving all of them."""
    status = tmp_path / "status"
    proc, port = start_filter(tmp_path, free_port(), workers=2,
                              server_extra=f'concurrency = 3\nstatus_file = "{status}"')
    try:
        time.sleep(1.0)  # both workers up (the port opens before they fork)
        open_ = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        for sock in open_:
            assert _greeted(sock, 10).startswith(b"220 ")
        waiting = socket.create_connection(("127.0.0.1", port))
        assert _greeted(waiting, 2) == b""
        workers = _status(status)["workers"]
        assert sorted(w["connection_limit"] for w in workers) == [1, 2]
        assert [w["connections"] for w in workers] == [w["connection_limit"] for w in workers]
        open_[1].sendall(b"QUIT\r\n")
        assert _greeted(open_[1], 10).startswith(b"221 ")
        open_[1].close()
        assert _greeted(waiting, 10).startswith(b"220 ")
        waiting.sendall(b"NOOP\r\n")
        assert _greeted(waiting, 10).startswith(b"250 ")
        for sock in (open_[0], open_[2], waiting):
            sock.close()
    finally:
        proc.stop()


def test_no_more_workers_than_connections(tmp_path, caplog):
    from scanner import config as cfgmod
    from scanner.cli.serve_cmd import _workers

    path = tmp_path / "scanner.toml"
    path.write_text("[server]\nworkers = 4\nconcurrency = 2\n")
    with caplog.at_level("INFO", logger="scanner"):
        assert _workers(cfgmod.load(str(path))) == 2
    assert "starting 2 worker(s), not 4" in caplog.text
    path.write_text("[server]\nworkers = 3\nconcurrency = 20\n")
    assert _workers(cfgmod.load(str(path))) == 3


def test_scanner_serve_with_two_listeners_and_a_share_of_one_keeps_greeting(tmp_path):
    """Four cores, server.concurrency 4 and a second listener (ORIGINATING, or LMTP):
    every worker's share is 1. After its first session each worker's one slot went to
    the accept loop of the listener nobody used, and the busy one greeted nobody again."""
    proc, port = start_filter(tmp_path, free_port(), workers=2, lmtp_port=free_port(),
                              server_extra="concurrency = 2")
    try:
        time.sleep(1.0)  # both workers up (the port opens before they fork)
        for _ in range(6):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                assert _greeted(sock, 10).startswith(b"220 ")
                sock.sendall(b"QUIT\r\n")
                assert _greeted(sock, 10).startswith(b"221 ")
    finally:
        proc.stop()

"""Fixtures of the quarantine tests: a quarantine in a temporary directory, a next hop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner import config as cfgmod
from scanner.quarantine.ampdp import start_ampdp_server
from scanner.quarantine.config import QuarantineConfig
from scanner.quarantine.store import Quarantine
from scanner.reinject.deliver import NextHop
from scanner.testing.postfix import dead_port
from scanner.testing.sink import Sink

from .util import LoopThread, config_text


@pytest.fixture
def qdir(tmp_path: Path) -> Path:
    return tmp_path / "quarantine"


@pytest.fixture
def quarantine(qdir: Path) -> Quarantine:
    return Quarantine(QuarantineConfig(directory=str(qdir)), hostname="filter1.test")


@pytest.fixture
def hop(sink: Sink) -> NextHop:
    return NextHop("127.0.0.1", sink.port, False, 2.0, 3.0, "scanner.test", True)


@pytest.fixture
def dead_hop() -> Iterator[NextHop]:
    """A next hop whose port refuses connections (bound, never listened on)."""
    with dead_port() as port:
        yield NextHop("127.0.0.1", port, False, 1.0, 2.0, "scanner.test", True)


async def _close_server(srv) -> None:
    srv.close()


@pytest.fixture
def server(tmp_path: Path, sink: Sink):
    """(config, quarantine, socket path) with our AM.PDP server running."""
    def start(extra: str = "", sock_dir: Path | None = None, log_ids=None):  # type: ignore[no-untyped-def]
        path = (sock_dir or tmp_path) / "scanner.sock"
        text = config_text(tmp_path / "q", sink.port, path,
                           extra + f"requeue_port = {sink.port}\n")
        config = cfgmod.loads(text)
        q = Quarantine(config.quarantine)
        servers.append(loop.run(start_ampdp_server(str(path), q, config, log_ids=log_ids)))
        return config, q, path

    loop = LoopThread()
    servers: list = []
    yield start
    for srv in servers:  # close each server inside its own loop (not thread-safe otherwise)
        loop.run(_close_server(srv))
    loop.stop()

"""A worker's SIGHUP reloads (scanner.serve.reload), without processes: they run in the
thread pool, coalesce, survive a failing check and a pool that is shut down. The
signal paths through real workers are in tests/test_bayes_check.py."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from scanner.pipeline.cpu import make_run_cpu
from scanner.serve.reload import Reloads


class _Check:
    """A check whose reload records the thread it ran in and can be held."""

    name = "held"

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.started = threading.Event()
        self.go_on = threading.Event()
        self.go_on.set()

    def reload(self) -> None:
        self.threads.append(threading.get_ident())
        self.started.set()
        assert self.go_on.wait(30)


class _Broken:
    name = "broken"

    def reload(self) -> None:
        raise RuntimeError("the data file is unreadable")


def test_requests_coalesce_and_reloads_run_off_the_event_loop(caplog):
    check = _Check()

    async def go() -> list[int]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(2) as pool:
            reloads = Reloads([_Broken(), check], make_run_cpu(loop, pool))
            for _ in range(50):  # a storm handled in one loop round
                reloads.request()
            await reloads.now()
            assert len(check.threads) == 1
            check.go_on.clear()
            check.started.clear()
            reloads.request()
            await asyncio.to_thread(check.started.wait, 30)  # a reload is running
            for _ in range(50):  # these come while it runs: one more round
                reloads.request()
            check.go_on.set()
            await reloads.now()
        return [threading.get_ident()]

    [loop_thread] = asyncio.run(go())
    assert len(check.threads) == 3 and loop_thread not in check.threads
    assert caplog.text.count("reloading check broken failed; keeping the old state") == 3


def test_a_reload_after_the_pool_shut_down_is_logged_not_raised(caplog):
    check = _Check()

    async def go() -> None:
        pool = ThreadPoolExecutor(1)
        pool.shutdown()
        await Reloads([check], make_run_cpu(asyncio.get_running_loop(), pool)).now()

    asyncio.run(go())
    assert check.threads == []
    assert "SIGHUP reload not done (cannot schedule new futures after shutdown)" \
        in caplog.text


@pytest.fixture(autouse=True)
def _errors_logged(caplog):
    caplog.set_level("ERROR", logger="scanner")

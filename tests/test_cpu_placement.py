"""Where the analysis of a message runs: inline for small messages, the pool for large.

A worker hands CPU stages to a thread pool (``scanner.pipeline.cpu``), except while a
message of at most ``server.inline_cpu_max_size`` bytes is analysed; a model reload
and everything after the analysis (quarantine writes, DKIM signing) always use the pool.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from scanner.config import loads
from scanner.pipeline.cpu import inline_cpu, make_run_cpu
from scanner.pipeline.processor import Listener, Processor
from scanner.reinject.deliver import NextHop
from scanner.scores import load_scores
from scanner.task import Envelope, Recipient, Task
from scanner.testing.postfix import free_port
from tests.helpers import message


class _WhereCheck:
    """A check whose CPU stage records the thread it ran on (twice: direct and in a task)."""

    name = "where"

    def __init__(self) -> None:
        self.run_cpu = None
        self.threads: list[int] = []

    async def run(self, task: Task) -> list:
        self.threads.append(await self.run_cpu(threading.get_ident))
        self.threads.append(await asyncio.create_task(self.run_cpu(threading.get_ident)))
        return []


def _analyse(limit: int, size: int) -> tuple[list[int], int]:
    config = loads(f"[server]\ninline_cpu_max_size = {limit}\n[decode]\nenabled = false\n")
    check = _WhereCheck()

    async def go() -> int:
        with ThreadPoolExecutor(max_workers=1) as pool:
            check.run_cpu = make_run_cpu(asyncio.get_running_loop(), pool)
            hop = NextHop("127.0.0.1", free_port(), False, 1, 1, "t", True)
            proc = Processor(config, [check], load_scores(), hop, "scanner.test",
                             run_cpu=check.run_cpu)
            raw = message("size test", body="x" * size)
            task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=raw,
                        envelope=Envelope("a@example.org", (Recipient("b@example.test"),)))
            await proc.analyse(task, Listener(10024, "ESMTP", ""))
            # after the analysis (where quarantine writes happen) the pool is used again
            check.threads.append(await check.run_cpu(threading.get_ident))
        return threading.get_ident()

    loop_thread = asyncio.run(go())
    return check.threads, loop_thread


def test_small_message_is_analysed_inline():
    threads, loop_thread = _analyse(limit=4096, size=100)
    assert threads[:2] == [loop_thread, loop_thread]
    assert threads[2] != loop_thread


@pytest.mark.parametrize("limit", [4096, 0])
def test_large_message_or_zero_limit_uses_the_pool(limit: int):
    threads, loop_thread = _analyse(limit=limit, size=10000 if limit else 10)
    assert loop_thread not in threads


def test_inline_cpu_can_be_switched_off_inside():
    async def go() -> list[bool]:
        with ThreadPoolExecutor(max_workers=1) as pool:
            run_cpu = make_run_cpu(asyncio.get_running_loop(), pool)
            here = threading.get_ident()
            with inline_cpu(True):
                first = await run_cpu(threading.get_ident) == here
                with inline_cpu(False):  # as the classifier's model reload does
                    second = await run_cpu(threading.get_ident) == here
                third = await run_cpu(threading.get_ident) == here
        return [first, second, third]

    assert asyncio.run(go()) == [True, False, True]

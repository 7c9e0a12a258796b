"""Build a Task from raw bytes exactly as the pipeline does, for check unit tests.

    with task_from_bytes(raw) as task:
        hits = asyncio.run(check.run(task))

Parsing and unpacking are the real stages; only the SMTP layer is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from decoders.unpack import unpack
from scanner.config import Config, load
from scanner.mailid import new_mail_id
from scanner.pipeline.parse import parse_headers, postfix_queue_id
from scanner.pipeline.unpack import limits_from
from scanner.task import ClientInfo, Envelope, Recipient, Task


@contextmanager
def task_from_bytes(raw: bytes, *, sender: str = "sender@example.org",
                    recipients: tuple[str, ...] = ("rcpt@example.test",),
                    client: ClientInfo | None = None, policy_bank: str = "",
                    config: Config | None = None) -> Iterator[Task]:
    """A Task with headers parsed and parts decoded; temp files removed on exit."""
    config = config or load(None)
    task = Task(mail_id=new_mail_id(), raw=raw, client=client or ClientInfo(),
                envelope=Envelope(sender, tuple(Recipient(r) for r in recipients)),
                policy_bank=policy_bank, log_id="test-01")
    task.message = parse_headers(raw)
    task.queue_id = postfix_queue_id(task.message)
    result = unpack(raw, limits_from(config))
    task.parts = list(result.parts)
    task.hits.extend(result.hits)
    try:
        yield task
    finally:
        result.close()

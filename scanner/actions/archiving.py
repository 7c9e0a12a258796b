"""The archive: a copy of every message, whatever its verdict, kept before anything else
happens to it (amavis's ``archive_quarantine_*``).

``archive_to`` mails the copy to an address through the next hop
(:func:`scanner.actions.copies.send_copy`); ``archive_directory`` writes it to a file
(:mod:`scanner.quarantine.archive`, the quarantine's writer). A copy not taken or not
written defers the recipients it is for (the caller answers 451; under SMTP the whole
message). A file of a message that is deferred later is removed again, since Postfix's
retry archives it anew under a new mail_id; a mailed copy cannot be taken back.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from scanner.actions.copies import send_copy
from scanner.quarantine import archive as files
from scanner.task import Task

if TYPE_CHECKING:
    from scanner.actions.run import Context, Outcome

log = logging.getLogger("scanner")


async def archive(task: Task, ctx: Context, out: Outcome, idx: list[int]) -> list[int]:
    """Archive the message for the recipients at ``idx``: to their ``archive_to``
    mailboxes, then into their ``archive_directory``, one copy per address or directory
    naming the recipients it archives for. The recipients whose copy failed (under SMTP
    the first failure ends it: the message is deferred anyway)."""

    async def mail(target: str, members: list[int], rcpts: list[str]) -> None:
        await send_copy(task, ctx.pool, [target], rcpts, "archive_to")
        out.mailed_archive = True

    async def write(directory: str, members: list[int], rcpts: list[str]) -> None:
        path = await ctx.run_cpu(lambda: files.write_copy(
            directory, mail_id=task.mail_id, raw=task.raw, sender=task.envelope.sender,
            recipients=rcpts, subdir_levels=ctx.subdir_levels))
        out.archived.append((path, members))

    failed: list[int] = []
    for key, where, copy in (("archive_to", "to <{}>", mail),
                             ("archive_directory", "in {}", write)):
        for target, members in _groups(task, [i for i in idx if i not in failed], key):
            try:
                await copy(target, members,
                           [task.envelope.recipients[i].address for i in members])
            except Exception as exc:
                log.error("(%s) archiving %s failed: %s; deferring", task.log_id,
                          where.format(target), exc)
                failed += members
                if ctx.protocol != "LMTP":
                    return failed
    return failed


def _groups(task: Task, idx: list[int], key: str) -> list[tuple[str, list[int]]]:
    """The recipients at ``idx`` by the value of their policy's ``key`` (set only)."""
    groups: dict[str, list[int]] = {}
    for i in idx:
        value = getattr(task.verdicts[task.envelope.recipients[i].address].policy, key)
        if value:
            value = os.path.normpath(value) if key == "archive_directory" else value
            groups.setdefault(value, []).append(i)
    return sorted(groups.items())


async def unarchive_if_retried(task: Task, ctx: Context, out: Outcome,
                               retried: list[bool]) -> None:
    """Remove each archive file whose recipients will all be tried again (``retried``,
    per recipient), so the archive holds one copy per message, not one per attempt."""
    for path, members in list(out.archived):
        if all(retried[i] for i in members) and await ctx.run_cpu(
                lambda p=path: _drop(task, p)):
            out.archived.remove((path, members))


def drop_files(task: Task, out: Outcome) -> None:
    """Remove every archive file written (carrying out the verdicts failed: the message
    is deferred as a whole)."""
    for path, _members in out.archived:
        _drop(task, path)


def _drop(task: Task, path: Path) -> bool:
    """Remove the archive file of a deferred attempt; False (logged) if it stays."""
    try:
        files.remove_copy(path)
    except Exception as exc:  # a second copy after the retry is untidy, not a loss
        log.warning("(%s) deferred, but its archive copy %s stays: %s", task.log_id, path,
                    exc)
        return False
    log.info("(%s) deferred: archive copy %s removed (the retry writes it again)",
             task.log_id, path)
    return True

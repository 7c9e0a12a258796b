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
    """Archive the message for the recipients at ``idx``: mailboxes, then files. The
    recipients whose copy failed (under SMTP, after a failure no file is written: the
    message is deferred anyway)."""
    failed = await _mail_copies(task, ctx, out, idx)
    if failed and ctx.protocol != "LMTP":
        return failed
    return failed + await _file_copies(task, ctx, out, [i for i in idx if i not in failed])


def _groups(task: Task, idx: list[int], key: str) -> list[tuple[str, list[int]]]:
    """The recipients at ``idx`` by the value of their policy's ``key`` (set only)."""
    groups: dict[str, list[int]] = {}
    for i in idx:
        value = getattr(task.verdicts[task.envelope.recipients[i].address].policy, key)
        if value:
            value = os.path.normpath(value) if key == "archive_directory" else value
            groups.setdefault(value, []).append(i)
    return sorted(groups.items())


async def _mail_copies(task: Task, ctx: Context, out: Outcome, idx: list[int]) -> list[int]:
    """Send the message to its recipients' ``archive_to`` addresses, one copy per
    address naming the recipients it archives for."""
    failed: list[int] = []
    for target, members in _groups(task, idx, "archive_to"):
        rcpts = [task.envelope.recipients[i].address for i in members]
        try:
            await send_copy(task, ctx.pool, [target], rcpts, "archive_to")
        except Exception as exc:
            log.error("(%s) archiving to <%s> failed: %s; deferring", task.log_id, target, exc)
            failed += members
            if ctx.protocol != "LMTP":
                break
            continue
        out.mailed_archive = True
    return failed


async def _file_copies(task: Task, ctx: Context, out: Outcome, idx: list[int]) -> list[int]:
    """Write the message into its recipients' ``archive_directory``, one file per
    directory naming the recipients it archives for."""
    failed: list[int] = []
    for directory, members in _groups(task, idx, "archive_directory"):
        rcpts = [task.envelope.recipients[i].address for i in members]
        try:
            path = await ctx.run_cpu(lambda d=directory, r=rcpts: files.write_copy(
                d, mail_id=task.mail_id, raw=task.raw, sender=task.envelope.sender,
                recipients=r, subdir_levels=ctx.subdir_levels))
        except Exception as exc:
            log.error("(%s) archiving in %s failed: %s; deferring", task.log_id, directory,
                      exc)
            failed += members
            if ctx.protocol != "LMTP":
                break
            continue
        out.archived.append((path, members))
    return failed


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
